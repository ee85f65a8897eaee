"""The OpenAPI as client generators read it (app/api/openapi_compat.py): no default beside a $ref, the
discriminator required in every variant. tests/app/test_generated_clients.py runs the generators themselves."""

from __future__ import annotations

import pytest

from app.api.openapi_compat import portable
from app.core.config import Settings
from app.main import create_app


@pytest.fixture(scope="module")
def openapi(tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("home")
    return create_app(Settings(home=home, database_url=f"sqlite:///{home / 'dynds.db'}", broker_url=None)).openapi()


def properties(schema: dict):
    for name, component in schema["components"]["schemas"].items():
        for prop_name, prop in component.get("properties", {}).items():
            yield f"{name}.{prop_name}", prop


def refers(prop: dict) -> bool:
    return any("$ref" in m for m in (prop, *prop.get("anyOf", ()), *prop.get("oneOf", ()), *prop.get("allOf", ())))


def test_no_default_sits_beside_a_ref_and_the_description_keeps_it(openapi):
    assert [name for name, prop in properties(openapi) if "default" in prop and refers(prop)] == []
    props = dict(properties(openapi))
    assert props["JobSpec.dynds"]["description"] == "Default: `{}`."
    assert props["DynDSSpec.schedule"]["description"] == 'Default: `{"kind": "stochastic"}`.'
    assert props["SweepCreate.base"]["description"].endswith("for every default. Default: `{}`.")
    # defaults of plain values stay where generators read them
    assert props["DynDSSpec.bn"]["default"] == "frozen" and props["SweepCreate.force"]["default"] is False


def test_every_discriminator_is_required_in_each_of_its_variants(openapi):
    components = openapi["components"]["schemas"]
    unions = [prop for _, prop in properties(openapi) if "discriminator" in prop]
    assert unions, "the schedule is a discriminated union"
    for prop in unions:
        key = prop["discriminator"]["propertyName"]
        for target in prop["discriminator"]["mapping"].values():
            variant = components[target.removeprefix("#/components/schemas/")]
            assert key in variant["required"], target


def test_portable_gives_the_shortest_default_that_parses_to_it():
    schema = {
        "components": {
            "schemas": {
                "A": {"properties": {"b": {"$ref": "#/components/schemas/B", "default": {"x": 1, "y": 5}, "description": "a B"}}},
                "B": {"properties": {"x": {"default": 1}, "y": {"default": 2}}},
            }
        }
    }
    b = portable(schema)["components"]["schemas"]["A"]["properties"]["b"]
    assert b == {"$ref": "#/components/schemas/B", "description": 'a B. Default: `{"y": 5}`.'}


def test_operations_are_named_by_their_function_and_the_names_are_unique(openapi):
    ids = {(method, path): op["operationId"] for path, item in openapi["paths"].items() for method, op in item.items()}
    assert len(set(ids.values())) == len(ids)
    assert ids["post", "/api/v1/jobs"] == "submit_job" and ids["get", "/api/v1/jobs/{job_id}"] == "read_job"
    assert ids["get", "/api/v1/healthz"] == "healthz" and ids["get", "/healthz"] == "healthz_healthz_get"  # the mirror keeps FastAPI's
    assert ids["get", "/api/v1/export"] == "export_results"  # `export`: reserved in TypeScript

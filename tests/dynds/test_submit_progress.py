"""`dynds submit --wait`'s progress: one live line on a terminal, a line every few percent or tens of seconds in a log."""

import io

from dynds.commands.submit import ProgressReporter, eta_words


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def state(fraction, *, status="running", run="dynds", job_id=7):
    progress = {"run": run, "epoch": int(fraction * 4), "epochs": 4, "step": int(fraction * 400), "total_steps": 400, "fraction": fraction}
    return {"id": job_id, "status": status, "progress": progress if status == "running" else None}


def polls(reporter, clock, fractions, every_s=1.0):
    """One poll a second, as the client follows a job."""
    reporter(state(0.0, status="queued"))
    for f in fractions:
        clock.t += every_s
        reporter(state(f))
    clock.t += every_s
    reporter(state(1.0, status="succeeded"))


def test_a_log_gets_a_line_every_few_percent_not_one_per_poll():
    out, clock = io.StringIO(), Clock()
    reporter = ProgressReporter(out, interactive=False, clock=clock)
    polls(reporter, clock, [i / 1000 for i in range(1, 1000)])  # 999 polls of progress
    lines = out.getvalue().splitlines()
    assert 20 <= len(lines) <= 25, lines  # queued, every 5 %, succeeded
    assert lines[0] == "job 7: queued" and lines[-1] == "job 7: succeeded"
    assert "epoch" in lines[2] and "ETA" in lines[2]


def test_a_slow_job_in_a_log_still_says_something_every_minute():
    out, clock = io.StringIO(), Clock()
    reporter = ProgressReporter(out, interactive=False, clock=clock)
    polls(reporter, clock, [i / 10_000 for i in range(1, 121)], every_s=5.0)  # 1.2 % over 10 minutes
    running = [line for line in out.getvalue().splitlines() if "running" in line]
    assert len(running) == 10  # at 5 s, then one per 60 s of news until 600 s


def test_a_terminal_gets_one_live_line_ended_when_the_job_is():
    out, clock = io.StringIO(), Clock()
    reporter = ProgressReporter(out, interactive=True, clock=clock)
    polls(reporter, clock, [0.25, 0.5, 0.75])
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("job 7: succeeded\n")
    assert text.count("\r\x1b[2K") == 5  # every state rewrites the one line
    assert "running dynds epoch 3/4 step 200/400 (50%), ETA 2 s" in text  # 25 % a second from 25 % at 1 s
    reporter.end()  # ending twice writes nothing more
    assert out.getvalue() == text


def test_eta_words():
    assert eta_words(None) == "" and eta_words(-1) == ""
    assert eta_words(42) == "ETA 42 s" and eta_words(200) == "ETA 3 min 20 s" and eta_words(7300) == "ETA 2 h 1 min"

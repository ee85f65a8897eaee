"""DynDSCallback in a real lightning.Trainer (Lightning is a test dependency and the dynds[lightning] extra)."""

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from dynds_core import create_model
from dynds_core.lightning import DynDSCallback


class Classifier(pl.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = create_model("resnet20", num_classes=10)
        self.sizes = []

    def forward(self, x):
        if self.training:
            self.sizes.append(x.shape[-1])
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


def test_a_real_trainer_runs_reduced_and_full_steps(tmp_path):
    torch.set_num_threads(1)
    data = TensorDataset(torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,)))
    module = Classifier()
    bn_before = module.net.bn1.running_mean.clone()
    callback = DynDSCallback(schedule={"kind": "periodic", "pattern": "FR"})
    trainer = pl.Trainer(
        max_epochs=1, callbacks=[callback], accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(module, DataLoader(data, batch_size=16), DataLoader(data, batch_size=32))
    assert module.sizes == [32, 16, 32, 16]  # 4 steps, every other one on the downsampled input
    assert callback.reduced_steps == 2 and callback._pass is None  # each reduced pass ended before backward
    assert not torch.equal(bn_before, module.net.bn1.running_mean)  # full steps trained BatchNorm as usual
    assert torch.isfinite(torch.tensor(trainer.callback_metrics["val_loss"]))

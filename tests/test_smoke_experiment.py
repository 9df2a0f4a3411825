import json

import pytest

from experiments import smoke

pytestmark = pytest.mark.slow  # end-to-end runs: the full suite only (-m "not slow" leaves them out)


def test_smoke_quick_writes_metrics_and_figure(tmp_path):
    assert smoke.main(["--quick", "--results-dir", str(tmp_path), "--no-progress"]) == 0
    metrics = json.loads((tmp_path / "smoke_quick" / "metrics.json").read_text())
    assert metrics["val_accuracy"] > 0.6
    assert len(metrics["history"]["train_loss"]) == metrics["epochs_run"]
    png = (tmp_path / "smoke_quick" / "loss.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000

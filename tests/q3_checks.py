"""What a quick Q3 run writes, checked the same way by the Q3 and main-job tests."""
import numpy as np
import pytest

from experiments import q3_activity as q3

PNG = b"\x89PNG\r\n\x1a\n"


def check_quick_metrics(out, m, models=q3.MODELS):
    """What a quick Q3 run of ``models`` writes, whatever the data: the protocol, every
    model's record (and the baseline's), the figures."""
    names = m["data"]["class_names"]
    assert len(names) == 6 and set(m["data"]["class_descriptions"]) == set(names)
    how = m["data"]["validation"]
    assert how["kind"] == "subject" and how["subjects"] and m["data"]["n_val"] == how["n_val"]
    assert m["data"]["n_train"] >= m["data"]["n_train_part"] + m["data"]["n_val"] - 32  # quick: whole batches
    for key in ("validation", "selection", "training", "augmentation", "refit"):
        assert m["protocol"][key]
    for model in (*models, "baseline"):
        r = m[model]
        for key in ("test_accuracy", "test_loss", "train_accuracy", "confusion_test", "seconds_per_epoch",
                    "epochs_run", "learning_rate", "val_accuracy", "seconds", "members", "seeds"):
            assert key in r, (model, key)
        cm = np.array(r["confusion_test"])
        assert cm.shape == (6, 6) and cm.sum() == m["data"]["n_test"]
        assert abs(np.trace(cm) / cm.sum() - r["members"][0]["test_accuracy"]) < 1e-6
        assert r["test_accuracy"] == pytest.approx(np.mean(r["test_accuracy_per_seed"]))
        assert 0.0 <= r["train_accuracy"] <= 1.0 and r["epochs_run"] >= 1 and r["test_loss"] > 0
        assert r["seconds_per_epoch"] > 0 and r["seconds"] > 0
        png = (out / f"{model}_confusion.png").read_bytes()
        assert png[:8] == PNG and len(png) > 20000
    for model in models:
        r = m[model]
        assert r["learning_rate"] == q3.Q3Config().lr(model)
        assert r["members"][0]["loaded"] is False and r["epochs"] == r["epochs_run"]
        assert len(r["history"]["train_loss"]) == r["epochs_run"]
        v = r["validation"]
        assert v["subjects"] == how["subjects"] and v["n_windows"] == how["n_val"]
        assert len(v["history"]["val_loss"]) == v["epochs_run"] and 1 <= v["best_epoch"] <= v["epochs_run"]
        assert (out / f"{model}_loss.png").read_bytes()[:8] == PNG
    # the gradient flow, measured and predicted (docs/recurrent.md: RNN8, BPTT7, BPTT8), at both ends of training
    for model in models:
        flow = m[model]["gradient_flow"]
        for when in ("init", "trained"):
            p = flow["predicted"][when]
            assert len(p["log10_predicted"]) == len(p["log10_whole"]) == len(flow[when]) == 150
            assert np.all(np.isfinite(p["log10_predicted"])) and min(flow[when]) > 0
            assert all(p[k] > 0 for k in ("factor_measured", "factor_path", "factor_whole"))
    # the LSTM with its forget-gate bias at 1, beside the default's and apart from it
    if "lstm" in models:
        ab = m["lstm_forget_bias_1"]
        assert ab["forget_bias"] == 1.0 and ab["forget_bias_default"] == 0.0 and ab["seeds"] == [m["settings"]["seed"]]
        assert np.array(ab["confusion_test"]).sum() == m["data"]["n_test"]
        assert ab["gradient_flow"]["predicted"]["init"]["mean_gate"] > m["lstm"]["gradient_flow"]["predicted"][
            "init"]["mean_gate"]
        assert (out / "lstm_forget_bias_1_loss.png").read_bytes()[:8] == PNG
    else:
        assert not any(k.startswith("lstm_forget_bias") for k in m)
    # the baseline learns something even in the quick run; the cells at least run
    assert m["baseline"]["test_accuracy"] > 2 * m["chance_accuracy"]
    assert (out / "loss_all.png").read_bytes()[:8] == PNG
    table = (out / "comparison.md").read_text()
    assert all(m_.upper() in table for m_ in models) and "logistic baseline" in table
    assert m["settings"]["impl"] == "fast"

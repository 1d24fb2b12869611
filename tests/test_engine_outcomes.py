"""What a run's numbers mean: its length, split names, the printed figures, best.pt, early stopping."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from test_training import killed_after_first_checkpoint, make_cfg, run, untimed

import hairlab.training.progress as progress_module
from hairlab.errors import HairlabError
from hairlab.tracking.base import read_metrics
from hairlab.training.early_stop import EarlyStopping, direction
from hairlab.training.engine import run_length


def points(rows: list[dict]) -> list[dict]:
    return [r for r in rows if "train/loss" in r]


# -- trainer.max_steps / trainer.epochs -----------------------------------------------------------
@pytest.mark.parametrize("epochs,max_steps,expected", [
    (None, None, (16, "epochs")),  # neither: one epoch
    (None, 40, (40, "max_steps")),  # max_steps alone decides (Lightning)
    (1, 40, (16, "epochs")),  # both: whichever ends first
    (5, 40, (40, "max_steps")),
    (3, None, (48, "epochs")),
])
def test_run_length(epochs: int | None, max_steps: int | None, expected: tuple[int, str]) -> None:
    assert run_length(epochs, max_steps, 16) == expected


def test_max_steps_alone_runs_that_many_steps(tmp_path: Path) -> None:
    """trainer.max_steps=40 on a 16-step epoch trains 40 steps (it ran 16, capped by epochs: 1)."""
    cfg = make_cfg(tmp_path, batch_size=8, max_steps=40, log_every=8)
    del cfg.trainer.epochs
    cfg.dataset.num_train = 128
    result, rows, tracker = run(cfg, tmp_path / "run")
    assert result["step"] == 40 and result["epoch"] == 3
    assert [r["step"] for r in points(rows)] == [16, 32, 40]
    assert tracker.tags["hairlab.stop_reason"] == "max_steps" == result["stop_reason"]
    assert torch.load(tmp_path / "ckpt" / "last.pt", weights_only=True)["total_steps"] == 40


def test_hairlab_run_max_steps_cli(tmp_path: Path) -> None:
    """The README's smoke-run advice through the real CLI: trainer.max_steps=N decides the length."""
    from conftest import run_cli

    out = tmp_path / "job"
    proc = run_cli(["run", "model=hairnet_cifar", "dataset=synthetic", "dataset.num_train=64",
                    "dataset.num_test=16", "trainer.batch_size=8", "trainer.max_steps=20", "trainer.log_every=10",
                    "tracking=local", "hw_targets=[]", f"hydra.run.dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [r["step"] for r in points(read_metrics(out))] == [8, 16, 20]
    tags = json.loads((out / "tags.json").read_text())
    assert tags["status"] == "FINISHED" and tags["hairlab.stop_reason"] == "max_steps"
    assert tags["hairlab.selection_metric"] == "test/acc"


# -- split names ------------------------------------------------------------------------------------
def test_eval_every_points_use_the_val_split_name(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, eval_every=2)
    cfg.dataset.val_size = 16
    result, rows, tracker = run(cfg, tmp_path / "run")
    pts = points(rows)
    assert [r["step"] for r in pts] == [2, 3, 4, 6] and all("val/acc" in r and "val/loss" in r for r in pts)
    assert not any("test/acc" in r for r in pts)  # test is evaluated once, after training
    assert [r["step"] for r in rows if "test/acc" in r] == [6]
    assert result["selection_metric"] == "val/acc" == tracker.tags["hairlab.selection_metric"]


def test_no_evaluation_means_no_selection_metric(tmp_path: Path) -> None:
    result, rows, tracker = run(make_cfg(tmp_path, eval_split="none"), tmp_path / "run")
    assert result["selection_metric"] is None and "hairlab.selection_metric" not in tracker.tags
    assert not any(k.startswith(("val/", "test/")) for r in rows for k in r)


# -- the printed figures and the logged ones agree ----------------------------------------------------
class Recorder(progress_module.EpochProgress):
    """The engine's progress calls, as they were made."""

    events: list[tuple[str, Any]] = []

    def __init__(self, enabled: bool, console: Any = None) -> None:
        super().__init__(False)
        Recorder.events = []

    def update(self, done: int, loss: float, acc: float, img_s: float) -> None:
        Recorder.events.append(("update", (loss, acc)))

    def summary(self, text: str) -> None:
        Recorder.events.append(("summary", text))


def test_progress_bar_summary_and_logged_train_loss_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress_module, "EpochProgress", Recorder)
    # 3 steps per epoch, a point every 2 steps, the bar every step: windows of 2, 1, 1, 2 steps
    _, rows, _ = run(make_cfg(tmp_path, eval_every=2, log_every=1), tmp_path / "run")
    pts = points(rows)
    summaries = [text for kind, text in Recorder.events if kind == "summary" and "train loss" in text]
    assert len(summaries) == len(pts) == 4
    windows = ["(steps 1-2)", "(steps 3-3)", "(steps 4-4)", "(steps 5-6)"]
    for point, text, window in zip(pts, summaries, windows, strict=True):
        assert f"train loss {point['train/loss']:.4f} acc {point['train/acc']:.4f} {window}" in text
        assert f"test loss {point['test/loss']:.4f} acc {point['test/acc']:.4f}" in text
    # the bar's last figure before each point's line is that point's logged train loss and accuracy
    last_bar: tuple[float, float] | None = None
    seen = []
    for kind, payload in Recorder.events:
        if kind == "update":
            last_bar = payload
        elif "train loss" in payload:
            seen.append(last_bar)
    assert seen == [(p["train/loss"], p["train/acc"]) for p in pts]


# -- best.pt ------------------------------------------------------------------------------------------
def test_best_checkpoint_holds_the_best_steps_weights(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path / "a", epochs=3, eval_every=1, checkpoint="both")
    cfg.optimizer.lr = 0.05  # a bumpy curve: the best point is not the last one
    result, rows, _ = run(cfg, tmp_path / "a")
    accs = {int(r["step"]): r["test/acc"] for r in points(rows)}
    best_step = max(accs, key=lambda s: (accs[s], -s))  # the first of equal best values
    assert best_step < max(accs), "the test needs a curve whose best point is not the last"
    best = torch.load(tmp_path / "a" / "ckpt" / "best.pt", weights_only=True)
    assert best["best"] == {"metric": "test/acc", "value": accs[best_step], "step": best_step}
    assert best["step"] == best_step and result["best_checkpoint"].endswith("best.pt")
    assert result["best"] == best["best"]  # the job's result names the best point too
    assert "optimizer" not in best and (tmp_path / "a" / "ckpt" / "last.pt").is_file()
    # the same training stopped at that step (evaluation points do not change training)
    again = make_cfg(tmp_path / "b", epochs=3, max_steps=best_step, checkpoint="last")
    again.optimizer.lr = 0.05
    run(again, tmp_path / "b")
    weights = torch.load(tmp_path / "b" / "ckpt" / "last.pt", weights_only=True)["model"]
    assert set(weights) == set(best["model"])
    assert all(torch.equal(weights[k], best["model"][k]) for k in weights)
    with pytest.raises(HairlabError, match="is a best checkpoint"):
        run(make_cfg(tmp_path / "c", resume=str(tmp_path / "a" / "ckpt" / "best.pt")), tmp_path / "c")


@pytest.mark.parametrize("mode,files", [("best", {"best.pt"}), ("last", {"last.pt"}), (True, {"last.pt"}),
                                        ("none", set()), (False, set()), ("both", {"best.pt", "last.pt"})])
def test_checkpoint_modes(tmp_path: Path, mode: Any, files: set[str]) -> None:
    result, _, _ = run(make_cfg(tmp_path, epochs=1, checkpoint=mode), tmp_path / "run")
    found = {p.name for p in (tmp_path / "ckpt").glob("*.pt")} if (tmp_path / "ckpt").is_dir() else set()
    assert found == files
    assert (result["best_checkpoint"] is not None) == ("best.pt" in files)


# -- early stopping ----------------------------------------------------------------------------------
def test_early_stopping_counts_points_without_improvement() -> None:
    stop = EarlyStopping("val/acc", "max", patience=2, min_delta=0.01)
    assert [stop.update(v, s) for s, v in enumerate([0.5, 0.505, 0.52, 0.52, float("nan")], 1)] == \
        [False, False, False, False, True]
    assert stop.reason == "early_stop: val/acc did not improve by 0.01 for 2 evaluations (best 0.52 at step 3)"
    assert (direction("test/loss", None), direction("val/acc", None), direction("train/loss", "max")) == \
        ("min", "max", "max")
    low = EarlyStopping("test/loss", "min", patience=1)
    assert [low.update(v, s) for s, v in enumerate([2.0, 1.5, 1.5], 1)] == [False, False, True]


def test_early_stop_ends_the_run_at_the_right_point(tmp_path: Path) -> None:
    """min_delta 0.5 on accuracy: nothing after the first point improves, so patience 3 stops at step 4
    (mid-epoch 2 with eval_every=1): FINISHED, tagged, last.pt at that step."""
    cfg = make_cfg(tmp_path, epochs=4, eval_every=1, early_stop={"patience": 3, "min_delta": 0.5})
    result, rows, tracker = run(cfg, tmp_path / "run")
    assert result["status"] == "finished" and result["step"] == 4 and result["epoch"] == 2
    assert [r["step"] for r in points(rows)] == [1, 2, 3, 4]  # no second evaluation of the stopping point
    reason = tracker.tags["hairlab.stop_reason"]
    assert reason == result["stop_reason"]
    assert reason.startswith("early_stop: test/acc did not improve by 0.5 for 3 evaluations (best ")
    assert reason.endswith(" at step 1)")
    assert torch.load(tmp_path / "ckpt" / "last.pt", weights_only=True)["step"] == 4


def test_early_stop_matches_a_replay_of_the_full_curve(tmp_path: Path) -> None:
    """Watching test/loss (min): the run stops where the uninterrupted run's curve says it should."""
    full_cfg = make_cfg(tmp_path / "full", epochs=4, eval_every=1)
    full_cfg.optimizer.lr = 0.2  # overshoots: the loss climbs after step 2
    _, full, _ = run(full_cfg, tmp_path / "full")
    stopper = EarlyStopping("test/loss", "min", patience=2)
    expected = next(int(r["step"]) for r in points(full) if stopper.update(r["test/loss"], int(r["step"])))
    assert expected < 12, "the test needs a curve that stalls before the end"
    cfg = make_cfg(tmp_path / "es", epochs=4, eval_every=1,
                   early_stop={"metric": "test/loss", "patience": 2})  # a loss: mode min by itself
    cfg.optimizer.lr = 0.2
    result, rows, _ = run(cfg, tmp_path / "es")
    assert result["step"] == expected and result["stop_reason"] == stopper.reason
    assert untimed(points(rows)) == untimed([r for r in points(full) if r["step"] <= expected])


def test_early_stop_true_and_a_metric_the_run_does_not_log(tmp_path: Path) -> None:
    result, _, _ = run(make_cfg(tmp_path / "a", epochs=2, early_stop=True), tmp_path / "a")
    assert result["stop_reason"] == "epochs"  # patience 3 cannot run out in 2 points
    with pytest.raises(HairlabError, match=r"trainer\.early_stop\.metric=val/acc is not logged .* test/acc"):
        run(make_cfg(tmp_path / "b", early_stop={"metric": "val/acc"}), tmp_path / "b")
    with pytest.raises(HairlabError, match=r"trainer\.early_stop needs an evaluation"):
        run(make_cfg(tmp_path / "c", eval_split="none", early_stop=True), tmp_path / "c")


# -- tracking.log_model, and the result of a reused run --------------------------------------------
def test_log_model_gets_the_trained_model_and_real_images(tmp_path: Path) -> None:
    from hairlab.plugin_manager import get_host
    from hairlab.tracking.base import LocalTracker
    from hairlab.training.job import train_job

    class Keeping(LocalTracker):
        logged: list[tuple[Any, Any]] = []

        def log_model(self, model: Any, input_example: Any) -> None:
            self.logged.append((model, input_example))

    for wanted in (False, True):
        cfg = make_cfg(tmp_path, epochs=1)
        cfg.tracking = {"log_model": wanted}
        tracker = Keeping(tmp_path / f"run{wanted}")
        Keeping.logged = []
        try:
            train_job(cfg, tracker, get_host())
        finally:
            tracker.close()
        assert len(Keeping.logged) == int(wanted)
    model, example = Keeping.logged[0]
    assert example.shape == (2, 3, 16, 16) and example.dtype == torch.float32 and example.device.type == "cpu"
    assert not model.training and model(example).shape == (2, 4)


def test_a_reused_runs_result_carries_its_selection_metric_and_stop_reason() -> None:
    from types import SimpleNamespace

    from hairlab.tracking.resume import stored_result

    run = SimpleNamespace(info=SimpleNamespace(run_id="r1"), data=SimpleNamespace(
        tags={"hairlab.selection_metric": "val/acc", "hairlab.stop_reason": "max_steps"}, metrics={"val/acc": 0.5}))
    assert stored_result(run) == {"status": "skipped", "run_id": "r1", "selection_metric": "val/acc",
                                  "stop_reason": "max_steps", "val/acc": 0.5}


def test_a_resumed_run_stops_early_where_the_uninterrupted_one_did(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed after epoch 1 (2 points without improvement so far), resumed: it stops at step 4 all the same,
    and keeps best.pt from the first run."""
    def cfg(name: str, **extra: Any) -> Any:
        return make_cfg(tmp_path / name, epochs=4, eval_every=1, checkpoint="both",
                        early_stop={"patience": 3, "min_delta": 0.5}, **extra)
    full, full_rows, _ = run(cfg("full"), tmp_path / "full")
    with killed_after_first_checkpoint(monkeypatch):
        run(cfg("killed"), tmp_path / "killed")
    result, rows, _ = run(cfg("resumed", resume=str(tmp_path / "killed" / "ckpt")), tmp_path / "resumed")
    assert full["step"] == result["step"] == 4 and result["stop_reason"] == full["stop_reason"]
    assert untimed(points(rows)) == untimed(points(full_rows))
    best = torch.load(tmp_path / "resumed" / "ckpt" / "best.pt", weights_only=True)
    assert best["best"] == torch.load(tmp_path / "full" / "ckpt" / "best.pt", weights_only=True)["best"]


@pytest.mark.parametrize(("metric", "higher"), [
    ("val/acc", True), ("test/acc", True), ("throughput/img_s", True), ("val/f1", True),
    ("val/loss", False), ("train/loss", False), ("hw/paper2012/latency_s", False), ("time/epoch_s", False),
    ("hw/host/ops", False), ("model/params", False), ("val/error", False),
])
def test_early_stop_and_objectives_read_a_metric_s_direction_alike(metric: str, higher: bool) -> None:
    """One rule: a search objective and early stopping never disagree on which way is better."""
    from hairlab.search.objective import default_direction

    assert direction(metric, None) == ("max" if higher else "min")
    assert default_direction(metric) == ("maximize" if higher else "minimize")

"""Item 7: the bad samples of a fit are listed at its end, logged as metrics, and kept across a resume."""

from __future__ import annotations

import csv

from nano8k.commands import fit as fit_cli
from tests.reliability.runs import demo_config, manifest_with_bad_audio, read_steps


def _metric(log_root, name: str) -> list[float]:
    values = []
    for path in sorted(log_root.rglob("metrics.csv")):
        with open(path, encoding="utf-8") as handle:
            values += [float(row[name]) for row in csv.DictReader(handle) if row.get(name)]
    return values


def test_bad_samples_are_summarized_logged_and_kept_across_resume(tmp_path, capsys):
    train, bad_keys = manifest_with_bad_audio(tmp_path, bad_every=20)
    steps = tmp_path / "steps.jsonl"
    logger = {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(tmp_path / "logs")}}
    config = demo_config(
        tmp_path,
        recorder={"path": str(steps)},
        last_every_n_steps=5,
        trainer={
            "max_epochs": 1,
            "max_steps": -1,
            "val_check_interval": None,
            "check_val_every_n_epoch": 1,
            "logger": logger,
        },
        data={"train_manifests": str(train), "on_bad_sample": "skip", "max_bad_fraction": 0.1, "probe_audio": False},
    )
    first = fit_cli.run(["--config", str(config), "--preflight", "false"])
    out = capsys.readouterr().out
    assert f"[data] bad samples skipped: train {len(bad_keys)}, val 0" in out
    assert all(f"key={key}" in out for key in bad_keys)
    assert _metric(tmp_path / "logs", "data/bad_samples_train")[-1] == len(bad_keys)

    seen_before = len(read_steps(steps))
    per_epoch = first.trainer.global_step
    fit_cli.main(
        [
            "--config",
            str(config),
            "--preflight",
            "false",
            "--trainer.max_epochs",
            "2",
            "--trainer.max_steps",
            str(per_epoch + 2),
            "--ckpt_path",
            "last",
        ]
    )
    out = capsys.readouterr().out
    seen_again = {key for row in read_steps(steps)[seen_before:] for key in row["skipped"]}
    assert set(bad_keys) - seen_again, "every bad sample was met again: the test cannot tell kept from re-found"
    assert f"[data] bad samples skipped: train {len(bad_keys)}, val 0" in out  # the ones before the resume too
    assert _metric(tmp_path / "logs", "data/bad_samples_train")[-1] == len(bad_keys)

"""``gradwatch fix RUN_DIR``: the diagnosis of a recorded run and the remedies for it."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._options import TEXT_ALIAS_EPILOG, add_format


def register(sub: Any) -> None:
    p = sub.add_parser(
        "fix",
        help="show the remedies prescribed for a recorded run",
        description=(
            "Load a recorded run, diagnose it, and print the ranked remedies with the reason "
            "for each and the call that applies it. Without the model at hand, remedies are "
            "checked only against the recorded layer table."
        ),
        epilog=TEXT_ALIAS_EPILOG,
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by gw.watch")
    add_format(p, text_alias=True)
    p.add_argument(
        "--all",
        action="store_true",
        help="also list the remedies the recorded model rules out, with why",
    )
    p.set_defaults(func=run)


def _call(remedy: str, options: dict[str, Any]) -> str:
    from gradwatch.remedies import REMEDIES

    args = "".join(
        f", {k}={v:.4g}" if isinstance(v, float) else f", {k}=..." for k, v in options.items()
    )
    call = f'gw.remedies.apply(model, "{remedy}"{args})'
    if REMEDIES[remedy].returns == "scheduler":  # it acts only if the loop steps it
        return f"scheduler = {call}; then scheduler.step() after each optimizer.step()"
    return call


def _trainer_setting(
    remedy: str, options: dict[str, Any], framework: object, peak_rate: float | None = None
) -> str | None:
    """The trainer's own setting for ``remedy`` where the run was recorded by a trainer that
    owns the step (``meta["trainer"]["framework"]``): the HF Trainer clips and schedules
    itself, so a clipper or scheduler made beside it would act twice or be replaced.
    ``peak_rate``: the run's peak learning rate, where the trace has it."""
    from gradwatch.remedies.lower_lr import RATE_FACTORS

    limit = options.get("max_norm")
    value = f"{limit:.4g}" if isinstance(limit, float) else "..."
    if remedy in RATE_FACTORS and framework in ("transformers", "lightning"):
        factor = options["factor"]
        rate = f"{peak_rate * factor:.3g}" if peak_rate else f"<your rate x {factor:g}>"
        if framework == "transformers":
            return f"TrainingArguments(..., learning_rate={rate}) (the Trainer's own rate)"
        return f"the optimizer configure_optimizers returns, at lr={rate}"
    if framework == "transformers":
        if remedy == "lr_warmup":
            return "TrainingArguments(..., warmup_steps=...) (the Trainer's linear warm-up)"
        if remedy == "clip_norm":
            return f"TrainingArguments(..., max_grad_norm={value}) (the Trainer clips)"
    if framework == "lightning":
        if remedy == "lr_warmup":
            return (
                'configure_optimizers returns {"optimizer": opt, "lr_scheduler": {"scheduler": '
                'gw.remedies.lr_warmup(opt, steps=...), "interval": "step"}}'
            )
        if remedy in ("clip_norm", "clip_value"):
            algorithm = remedy.removeprefix("clip_")
            clip = value if remedy == "clip_norm" else "..."
            return f'Trainer(..., gradient_clip_val={clip}, gradient_clip_algorithm="{algorithm}")'
    return None


def run(args: argparse.Namespace) -> int:
    from gradwatch.diagnosis import diagnose, peak_learning_rate
    from gradwatch.remedies import prescribe
    from gradwatch.report.console import print_findings
    from gradwatch.trace import load

    trace = load(args.run_dir)
    findings = list(diagnose(trace))
    prescriptions = prescribe(findings, trace=trace, include_inapplicable=args.all)
    if args.format == "json":
        print(
            json.dumps(
                {
                    "run_dir": str(args.run_dir),
                    "findings": [f.to_json() for f in findings],
                    "prescriptions": [p.to_json() for p in prescriptions],
                },
                indent=2,
                default=str,
            )
        )
        return 0
    trainer = trace.meta.get("trainer")
    framework = trainer.get("framework") if isinstance(trainer, dict) else None
    print(f"Run {args.run_dir}: {len(trace)} recorded steps, {len(trace.layers)} layers.")
    if not findings:
        print("No problem found: nothing to prescribe.")
        return 0
    print(f"\nFindings ({len(findings)}):")
    print_findings(findings, brief=True, indent=2)
    usable = [p for p in prescriptions if p.applicable]
    if not prescriptions:
        # Findings without remedies: notes (info), or a setting (the learning rate) or the task
        # as the suspect, which the messages name; an empty ranked list would read as an
        # omission.
        if all(f.severity == "info" for f in findings):
            print("\nNothing to fix: the findings above are notes (info), not problems.")
        else:
            print(
                "\nRemedies: none of the catalogue's transforms fits these findings; their "
                "messages above say what to change."
            )
        return 0
    print(f"\nRemedies, best first ({len(usable)}):")
    peak = peak_learning_rate(trace)
    for i, p in enumerate(usable, start=1):
        print(f"  {i}. {p.remedy}  (score {p.score:.2f}; for {', '.join(p.rules)})")
        print(f"     why: {p.reason}")
        own = _trainer_setting(p.remedy, p.options, framework, peak)
        print(f"     how: {own or _call(p.remedy, p.options)}")
        needed = [k for k, v in p.options.items() if v == "<required>"]
        if needed and own is None:
            print(f"     needs: {', '.join(needed)} (your data or setting)")
    ruled_out = [p for p in prescriptions if not p.applicable]
    if ruled_out:
        print("\nRuled out for this model:")
        for p in ruled_out:
            print(f"  - {p.remedy}: {p.why_not}")
    print(
        "\nChecked against the recorded layer table only; with the model in hand, "
        "gw.prescribe(findings, model) checks each remedy against it and "
        "gw.verify(model, remedy, batches) measures what it changes."
    )
    return 0

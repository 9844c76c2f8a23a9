"""Expert model benchmark: per model, load time, latency on a fixed input, and peak RSS per pool.

Each pool runs in its own fresh process (as a worker process would), loads every expert it can
serve here, then runs each one on the same fixed input a few times. Printed as a table.

    .venv/bin/python bench/models_bench.py [--repeats 3] [--pool text] [--json]

Fixed inputs: examples/meeting.wav (speech), examples/sign.png (text in an image), scikit-image's
bundled astronaut (a person) and chelsea (a cat) photos, and the English paragraph below.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

POOLS = ("text", "vision", "audio")
PARAGRAPH = (
    "Ada Lovelace was born in London in 1815. She worked with Charles Babbage on the Analytical Engine, "
    "a mechanical general-purpose computer. Her notes on the engine include what is recognised as the first "
    "algorithm intended to be carried out by a machine. Because of this, she is often regarded as the first "
    "computer programmer. The team was thrilled with the results of the new study."
)
# Per task type: the literal parameters a model of that task gets (zero-shot needs labels, etc.).
PARAMS: dict[str, dict[str, str]] = {
    "text-classification": {"labels": "history,sports,cooking,technology"},
    "translation": {"target": "Spanish"},
    "image-to-image": {"style": "canny"},
}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _rss_mb() -> float:
    """Current resident set size (what loading a model adds, unlike the peak)."""
    with open("/proc/self/statm", encoding="ascii") as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _sample_image(photo: str = "astronaut") -> Any:
    from workers.expert import Media

    try:
        from PIL import Image
        from skimage import data

        buf = io.BytesIO()
        Image.fromarray(getattr(data, photo)()).save(buf, format="PNG")
        return Media(data=buf.getvalue(), mime="image/png", name=f"{photo}.png")
    except ImportError:
        return Media(data=(ROOT / "examples" / "sign.png").read_bytes(), mime="image/png", name="sign.png")


def sample_inputs(task: str) -> dict[str, Any]:
    """The fixed input for a task type, built from its declared input slots."""
    from shared.catalog import TASK_TYPES
    from workers.expert import Media

    image = _sample_image("chelsea" if task == "image-classification" else "astronaut")
    audio = Media(data=(ROOT / "examples" / "meeting.wav").read_bytes(), mime="audio/wav", name="meeting.wav")
    sign = Media(data=(ROOT / "examples" / "sign.png").read_bytes(), mime="image/png", name="sign.png")
    texts = {"text": PARAGRAPH, "text2": "Lovelace wrote the first computer program for Babbage's engine.",
             "question": "Where was Ada Lovelace born?"}
    if task == "document-question-answering":
        return {"image": sign, "text": "What does the sign say?"}
    out: dict[str, Any] = {}
    for slot, spec in TASK_TYPES[task].inputs.items():
        if spec.kind == "image":
            out[slot] = sign if task == "image-to-text" else image
        elif spec.kind == "audio":
            out[slot] = audio
        elif spec.required or slot in texts:
            out[slot] = texts.get(slot, PARAGRAPH)
    return out


def params_for(cls: Any) -> dict[str, str]:
    """The fixed params of its task, less those the model does not understand, plus those it needs."""
    params = {k: v for k, v in PARAMS.get(cls.task, {}).items()
              if k not in cls.param_choices or v.lower() in cls.param_choices[k]}
    for name in cls.required_params:
        params.setdefault(name, sorted(cls.param_choices.get(name, {"x"}))[0])
    return params


def bench_pool(pool: str, repeats: int) -> dict[str, Any]:
    """Runs in the pool's own process: load each expert, run it `repeats` times on the fixed input."""
    from shared.settings import get_settings
    from workers.expert import get_expert
    from workers.pools import serving_experts

    settings = get_settings()
    baseline = _peak_rss_mb()
    rows: list[dict[str, Any]] = []
    for cls in serving_experts(pool, settings):
        spec_diag = cls.task.startswith("diag-")
        if spec_diag or cls.backend != "local":
            continue
        row: dict[str, Any] = {"pool": pool, "task": cls.task, "model": cls.model_id}
        expert = get_expert(cls.model_id)
        before = _rss_mb()
        started = time.perf_counter()
        try:
            expert.ensure_loaded()
            row["load_s"] = time.perf_counter() - started
            row["rss_step_mb"] = _rss_mb() - before
            inputs, params = sample_inputs(cls.task), params_for(cls)
            times = []
            for _ in range(repeats + 1):  # the first run warms caches and is not counted
                t0 = time.perf_counter()
                result = expert.run(inputs, params)
                times.append(time.perf_counter() - t0)
            row["first_s"] = times[0]
            row["median_s"] = statistics.median(times[1:])
            row["output"] = (result.text or "")[:60].replace("\n", " ")
        except Exception as exc:  # noqa: BLE001 - a benchmark reports every failure and goes on
            row["error"] = f"{type(exc).__name__}: {exc}"[:160]
        rows.append(row)
    return {"pool": pool, "baseline_rss_mb": baseline, "peak_rss_mb": _peak_rss_mb(), "rows": rows}


def run_pool_process(pool: str, repeats: int) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", pool, "--repeats", str(repeats)],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"pool {pool} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_table(results: list[dict[str, Any]]) -> None:
    head = f"{'pool':<7}{'task':<30}{'model':<52}{'load s':>8}{'load MB':>9}{'1st s':>8}{'med s':>8}  output"
    print(head)
    print("-" * len(head))
    for res in results:
        for r in res["rows"]:
            if "error" in r:
                print(f"{r['pool']:<7}{r['task']:<30}{r['model']:<52}  ERROR {r['error']}")
                continue
            print(f"{r['pool']:<7}{r['task']:<30}{r['model']:<52}{r['load_s']:>8.2f}{r['rss_step_mb']:>9.0f}"
                  f"{r['first_s']:>8.3f}{r['median_s']:>8.3f}  {r['output']}")
    print()
    for res in results:
        print(f"pool {res['pool']:<7} peak RSS {res['peak_rss_mb']:7.0f} MB "
              f"(process baseline {res['baseline_rss_mb']:.0f} MB, all its models loaded and run)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", choices=POOLS, action="append", help="only these pools (repeatable)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--child", choices=POOLS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(bench_pool(args.child, args.repeats)))
        return
    results = [run_pool_process(pool, args.repeats) for pool in (args.pool or POOLS)]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_table(results)


if __name__ == "__main__":
    main()

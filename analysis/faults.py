"""What a fault did to a trial, from its per-second series (pure): the throughput before,
the dip, the time until throughput is back within 10% of before and stays there, the
failed requests, the latency during the fault, and writes the store lost."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

RECOVERED = 0.9  # back within 10% of the throughput before the fault
HOLD_S = 3  # ... in a second and on average over it and the next two

# What each store keeps across a restart, as hscale runs it, and what would keep more.
DURABILITY = {
    "redis": "Redis runs without persistence (--save '' --appendonly no): a restart loses "
    "every key, acknowledged writes included. appendonly yes with appendfsync everysec "
    "keeps all but about the last second; appendfsync always keeps every acknowledged write.",
    "memcached": "memcached keeps nothing across a restart, by design: a cache, not a store.",
    "postgres": "PostgreSQL runs with fsync=off and synchronous_commit=off, but a restart "
    "(fast shutdown) writes a checkpoint first, so committed rows survive it; a crash "
    "could lose them, which synchronous_commit=on and fsync=on prevent.",
}


def _ok(row: Mapping[str, Any]) -> int:
    return int(row["requests"]) - int(row["failures"])


def window(series: Sequence[Mapping[str, Any]], warmup_s: float) -> list[Mapping[str, Any]]:
    """The whole seconds of the measured window (the last, partial second left out)."""
    start = math.ceil(warmup_s)
    rows = [r for r in series if r["t"] >= start]
    return rows[:-1] if len(rows) > 1 else rows


def effect(
    series: Sequence[Mapping[str, Any]],
    warmup_s: float,
    fault_t: float,
    pause_s: float | None = None,
    capacity_after: float = 1.0,
) -> dict[str, Any]:
    """fault_t: when the fault struck, in the series' clock (seconds from the test's start).
    capacity_after: the share of the replicas left when one is lost for good ((N-1)/N):
    recovery is then the survivors taking over, back within 10% of that share of before."""
    rows = window(series, warmup_s)
    before = [r for r in rows if r["t"] + 1 <= fault_t]
    after = [r for r in rows if r["t"] + 1 > fault_t]
    if not before or not after:
        return {"error": "the fault struck outside the measured window", "fault_t": fault_t}
    baseline = sum(_ok(r) for r in before) / len(before)
    expected = baseline * capacity_after
    recovery_s = None
    for i, row in enumerate(after):
        if row["t"] < fault_t:  # the second the fault struck in is partly before it
            continue
        # This second back, and the mean of HOLD_S seconds from it (every second left when
        # fewer remain): a mean, since single seconds move ~10% with the host's speed.
        held = after[i : i + HOLD_S]
        mean = sum(_ok(r) for r in held) / len(held)
        if _ok(row) >= RECOVERED * expected and mean >= RECOVERED * expected:
            recovery_s = max(0.0, row["t"] - fault_t)
            break
    # The fault's seconds: until recovery, and for a pause at least until the second its
    # held requests finish in (throughput can stay up while they wait, so recovery alone
    # could end the window before the slowest of them is counted).
    end = math.inf if recovery_s is None else fault_t + recovery_s
    end = max(end, fault_t + (pause_s or 0.0) + 1.0) if pause_s else end
    hit = [r for r in after if r["t"] < end] or after[:1]
    return {
        "fault_t": round(fault_t, 3),
        "baseline_rps": round(baseline, 1),
        "expected_rps": round(expected, 1),
        "rps_after": round(sum(_ok(r) for r in after[-HOLD_S:]) / len(after[-HOLD_S:]), 1),
        "lowest_rps": min(_ok(r) for r in after),
        "dip": round(1 - min(_ok(r) for r in after) / baseline, 4) if baseline else None,
        "recovery_s": None if recovery_s is None else round(recovery_s, 2),
        "recovered": recovery_s is not None,
        "failures_before": sum(int(r["failures"]) for r in before),
        "failures_after": sum(int(r["failures"]) for r in after),
        "mean_ms_before": _mean_ms(before),
        "mean_ms_during": _mean_ms(hit),
        "worst_second_ms": max((r.get("mean_ms") or 0.0 for r in hit), default=None),
        "max_ms_during": max((r.get("max_ms") or 0.0 for r in hit), default=None),
        "paused_s": pause_s,
    }


def _mean_ms(rows: Sequence[Mapping[str, Any]]) -> float | None:
    """The request-weighted mean latency of some seconds."""
    total = sum(int(r["requests"]) for r in rows if r.get("mean_ms") is not None)
    if not total:
        return None
    weighted = sum(r["mean_ms"] * int(r["requests"]) for r in rows if r.get("mean_ms") is not None)
    return round(weighted / total, 2)


def lost_writes(counter: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Acknowledged increments of the shared counter that the store no longer has: what it
    should hold (its value before plus every acknowledged increment) minus what it holds."""
    if not counter or counter.get("acknowledged") is None or counter.get("delta") is None:
        return None
    lost = max(0, int(counter["acknowledged"]) - int(counter["delta"]))
    return {"acknowledged": counter["acknowledged"], "delta": counter["delta"], "lost": lost}


def verdict(fault: str, done: Mapping[str, Any], found: Mapping[str, Any]) -> str:
    """One sentence per fault trial, with its numbers."""
    if found.get("error"):
        return f"{fault}: {found['error']}."
    what = done.get("replica") or done.get("store") or done.get("node") or ""
    moved = done.get("replicas_there")
    if moved:  # a node's fault: which replicas it took with it
        what += f", running {', '.join(moved)}"
    target = f"{found['expected_rps']:g} req/s"
    if found["expected_rps"] != found["baseline_rps"]:
        target += f" (the survivors' share of {found['baseline_rps']:g})"
    back = (
        f"throughput was back within {1 - RECOVERED:.0%} of {target} after "
        f"{found['recovery_s']:g} s"
        if found["recovered"]
        else f"throughput had not come back within {1 - RECOVERED:.0%} of {target} by the "
        f"end of the window ({found['rps_after']:g} req/s at the end)"
    )
    text = (
        f"{fault} ({what}): {back}; the worst second fell {found['dip']:.0%}, "
        f"{found['failures_after']} request(s) failed from the fault on, and the mean "
        f"latency went from {found['mean_ms_before']} ms to {found['mean_ms_during']} ms "
        f"(slowest request {found['max_ms_during']:,.0f} ms)."
    )
    lost = done.get("lost_writes")
    if lost is not None:
        text += (
            f" The shared counter lost {lost['lost']:,} acknowledged increment(s): it moved "
            f"{lost['delta']:+,} while {lost['acknowledged']:,} were acknowledged in the trial "
            "(a negative move: everything it held before went too)."
        )
    return text


def rows(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The table of faults.md and faults.html: one row per fault trial."""
    out = []
    for f in doc.get("faults") or []:
        e, lost = f.get("effect") or {}, f.get("lost_writes")
        out.append(
            {
                "fault": f["fault"],
                "victim": (f.get("done") or {}).get("replica")
                or (f.get("done") or {}).get("store", ""),
                "N": f["replicas"],
                "before req/s": e.get("baseline_rps"),
                "dip": f"{e['dip']:.0%}" if e.get("dip") is not None else "–",
                "recovery s": e.get("recovery_s") if e.get("recovered") else "not recovered",
                "failed": e.get("failures_after"),
                "mean ms before / during": f"{e.get('mean_ms_before')} / {e.get('mean_ms_during')}",
                "writes lost": "not measured" if lost is None else lost["lost"],
            }
        )
    return out


def markdown(doc: Mapping[str, Any], figure_names: Sequence[str]) -> str:
    lines = ["### Faults", ""]
    if doc.get("error"):
        lines += [f"**{doc['status']}**: {doc['error']}", ""]
    table = rows(doc)
    if table:
        header = list(table[0])
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(str(r[h]) for h in header) + " |" for r in table]
        lines.append("")
    for f in doc.get("faults") or []:
        lines += [f"- {f['verdict']}"]
        if f.get("errors"):
            top = sorted(f["errors"].items(), key=lambda kv: -kv[1])[:3]
            lines += ["  Failures: " + "; ".join(f"{n} x {e}" for e, n in top)]
        if f.get("durability"):
            lines += [f"  {f['durability']}"]
    lines.append("")
    lines += [f"![{name}](figures/{name}.png)" for name in figure_names]
    return "\n".join(lines) + "\n"


def html(doc: Mapping[str, Any], pngs: Mapping[str, bytes], data_uri: Any) -> str:
    """One self-contained page: the table, each fault's sentence and its timeline."""
    import jinja2

    env = jinja2.Environment(autoescape=True)
    page = env.from_string(FAULTS_PAGE)
    return page.render(doc=doc, table=rows(doc), figures={k: data_uri(v) for k, v in pngs.items()})


FAULTS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hscale faults</title>
<style>body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}
img{max-width:100%}</style></head><body>
<h1>Faults under load (store: {{ doc.store }}, status: {{ doc.status }})</h1>
{% if doc.error %}<p><strong>{{ doc.error }}</strong></p>{% endif %}
{% if table %}<table><tr>{% for h in table[0] %}<th>{{ h }}</th>{% endfor %}</tr>
{% for r in table %}<tr>{% for h in table[0] %}<td>{{ r[h] }}</td>{% endfor %}</tr>{% endfor %}
</table>{% endif %}
{% for f in doc.faults %}<h2>{{ f.fault }}</h2><p>{{ f.verdict }}</p>
{% if f.durability %}<p>{{ f.durability }}</p>{% endif %}
{% if f.errors %}<p>Failures:
{% for e, n in f.errors.items() %}{{ n }} x {{ e }}; {% endfor %}</p>{% endif %}
{% set key = "fault-" ~ f.fault %}
{% if key in figures %}<img alt="{{ key }}" src="{{ figures[key] }}">{% endif %}
{% endfor %}</body></html>
"""

#!/usr/bin/env python3
"""Baseline check for tests/data/duplicates/reports.toml.

An independent, deliberately plain duplicate scorer (Python 3.11, stdlib
only), used to show that the labelled set is solvable by a reasonable
character-bigram scorer without being trivial. It is not the engine's
scorer and nothing in the engine depends on it.

Score of a pair of reports a, b:

    sim(bigrams(a), bigrams(b))          Jaccard (default) or Dice
  + 0.15 if their locations match        (after normalisation, see below)
  + 0.05 if their categories match

bigrams(r) is the set of character bigrams of the title and of the text
(taken separately, so no bigram spans the two), after removing punctuation
and whitespace and normalising numerals: full-width digits and the Chinese
numerals 一..十 (also 十二, 二十, 二十三) become ASCII digits.

Locations are normalised the same way; a building written "3号楼", "3栋",
"3幢", "三号楼" or "3号楼2单元" becomes "3". Other places are compared as
written ("北门" and "北门垃圾站" do not match). A missing location or
category never matches.

Check: for each report a in a group of two or more, rank every other report
by score; each other member of a's group must be within the top
k = max(3, group size - 1) (a group of five has four other members). Ties
with a non-member count against the pair.

Usage:
    python3 tests/data/duplicates/baseline.py [--metric jaccard|dice]
                                              [--file PATH] [--verbose]

Exit status: 0 when every pair passes and the file is valid, 1 when some
pair fails, 2 when the file breaks the format rules.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

LOCATION_BONUS = 0.15
CATEGORY_BONUS = 0.05
TOP_K = 3

CHANNELS = {"box", "hotline", "wechat", "visit", "online"}
CATEGORIES = {"设施维修", "环境卫生", "安全隐患", "噪音扰民", "停车管理", "绿化", "物业服务", "其他"}
MAX_TITLE = 20  # characters, exclusive
MAX_TEXT = 80  # characters, exclusive

DIGITS = {c: str(i) for i, c in enumerate("零一二三四五六七八九")}
FULLWIDTH = str.maketrans("０１２３４５６７８９", "0123456789")
NUMERAL = re.compile(r"[一二三四五六七八九]?十[一二三四五六七八九]?|[一二三四五六七八九]")
BUILDING = re.compile(r"^(\d+)(?:号楼|号|栋|幢|座|楼)")


def _numeral(m: re.Match[str]) -> str:
    s = m.group(0)
    if "十" not in s:
        return DIGITS[s]
    tens, _, units = s.partition("十")
    return str((int(DIGITS[tens]) if tens else 1) * 10 + (int(DIGITS[units]) if units else 0))


def normalise(s: str) -> str:
    """Drop punctuation and whitespace, make numerals ASCII digits."""
    s = s.translate(FULLWIDTH)
    s = "".join(c for c in s if c.isalnum())
    return NUMERAL.sub(_numeral, s)


def location_key(loc: str | None) -> str | None:
    if not loc:
        return None
    s = normalise(loc)
    m = BUILDING.match(s)
    if m:
        return m.group(1)
    return s or None


def bigrams(s: str) -> set[str]:
    s = normalise(s)
    return {s[i : i + 2] for i in range(len(s) - 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def dice(a: set[str], b: set[str]) -> float:
    return 2 * len(a & b) / (len(a) + len(b)) if a or b else 0.0


def validate(reports: list[dict]) -> list[str]:
    errors = []
    seen = set()
    for r in reports:
        rid = r.get("id", "?")
        for field in ("id", "title", "text", "channel", "group"):
            if not isinstance(r.get(field), str) or not r.get(field):
                errors.append(f"{rid}: missing or empty {field}")
        if rid in seen:
            errors.append(f"{rid}: duplicate id")
        seen.add(rid)
        if r.get("channel") not in CHANNELS:
            errors.append(f"{rid}: unknown channel {r.get('channel')!r}")
        if "category" in r and r["category"] not in CATEGORIES:
            errors.append(f"{rid}: unknown category {r['category']!r}")
        if len(r.get("title", "")) >= MAX_TITLE:
            errors.append(f"{rid}: title has {len(r['title'])} characters")
        if len(r.get("text", "")) >= MAX_TEXT:
            errors.append(f"{rid}: text has {len(r['text'])} characters")
        unknown = set(r) - {"id", "title", "text", "channel", "location", "category", "group"}
        if unknown:
            errors.append(f"{rid}: unknown fields {sorted(unknown)}")
    return errors


def main() -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", type=Path, default=here / "reports.toml")
    ap.add_argument("--metric", choices=("jaccard", "dice"), default="jaccard")
    ap.add_argument("--verbose", action="store_true", help="print each grouped report's top suggestions")
    args = ap.parse_args()
    sim = jaccard if args.metric == "jaccard" else dice

    with open(args.file, "rb") as f:
        reports = tomllib.load(f)["report"]
    errors = validate(reports)
    if errors:
        print("\n".join(errors))
        return 2

    ids = [r["id"] for r in reports]
    by_id = {r["id"]: r for r in reports}
    groups: dict[str, list[str]] = defaultdict(list)
    for r in reports:
        groups[r["group"]].append(r["id"])
    multi = {g: m for g, m in groups.items() if len(m) >= 2}
    singles = [g for g, m in groups.items() if len(m) == 1]

    grams = {r["id"]: bigrams(r["title"]) | bigrams(r["text"]) for r in reports}
    locs = {r["id"]: location_key(r.get("location")) for r in reports}
    cats = {r["id"]: r.get("category") for r in reports}

    def score(a: str, b: str) -> float:
        s = sim(grams[a], grams[b])
        if locs[a] is not None and locs[a] == locs[b]:
            s += LOCATION_BONUS
        if cats[a] is not None and cats[a] == cats[b]:
            s += CATEGORY_BONUS
        return s

    scores = {(a, b): score(a, b) for a in ids for b in ids if a != b}

    print(f"{args.file}: {len(reports)} reports, {len(groups)} matters")
    print(
        f"  {len(multi)} duplicate groups holding {sum(map(len, multi.values()))} reports "
        f"(sizes {sorted((len(m) for m in multi.values()), reverse=True)}), {len(singles)} singletons"
    )
    print(f"  metric {args.metric}, location bonus {LOCATION_BONUS}, category bonus {CATEGORY_BONUS}")
    print()

    passed = failed = 0
    failures = []
    separation = []  # per report: worst mate score - best non-mate score
    pair_margin = []  # per ordered pair: mate score - best non-mate score
    mate_scores, best_other = [], []
    for g, members in sorted(multi.items()):
        k = max(TOP_K, len(members) - 1)
        for a in members:
            mates = [b for b in members if b != a]
            others = [c for c in ids if c != a and c not in members]
            top_other = max(scores[(a, c)] for c in others)
            best_other.append(top_other)
            separation.append(min(scores[(a, b)] for b in mates) - top_other)
            for b in mates:
                s = scores[(a, b)]
                mate_scores.append(s)
                pair_margin.append(s - top_other)
                rank = 1 + sum(scores[(a, m)] > s for m in mates if m != b) + sum(scores[(a, c)] >= s for c in others)
                if rank <= k:
                    passed += 1
                else:
                    failed += 1
                    beaten_by = sorted(
                        ((scores[(a, c)], c) for c in others if scores[(a, c)] >= s), reverse=True
                    )
                    failures.append((g, a, b, s, rank, k, beaten_by))
            if args.verbose:
                ranked = sorted(((scores[(a, c)], c) for c in ids if c != a), reverse=True)[: k + 2]
                shown = ", ".join(f"{c}{'*' if c in members else ''}={s:.3f}" for s, c in ranked)
                print(f"  {g:13} {a} {by_id[a]['title']}: {shown}")
    if args.verbose:
        print()

    total = passed + failed
    print(f"ordered pairs passing top-k: {passed}/{total}")
    if failures:
        print("rank failures:")
        for g, a, b, s, rank, k, beaten_by in failures:
            print(f"  {g}: {a} -> {b} score {s:.3f} rank {rank} > {k}; beaten by "
                  + ", ".join(f"{c} {by_id[c]['title']} ({v:.3f})" for v, c in beaten_by[:4]))
            print(f"    {a}: {by_id[a]['title']} | {by_id[a]['text']}")
            print(f"    {b}: {by_id[b]['title']} | {by_id[b]['text']}")
    print()

    def stats(name: str, xs: list[float]) -> None:
        print(
            f"  {name:38} min {min(xs):+.3f}  median {statistics.median(xs):+.3f}  "
            f"mean {statistics.mean(xs):+.3f}  max {max(xs):+.3f}"
        )

    print("scores (over grouped reports):")
    stats("duplicate pair score", mate_scores)
    stats("best non-duplicate score", best_other)
    stats("pair margin (pair - best non-dup)", pair_margin)
    stats("separation (worst pair - best non-dup)", separation)
    print(
        f"  pairs above every non-duplicate: {sum(m > 0 for m in pair_margin)}/{len(pair_margin)}; "
        f"reports fully separated: {sum(m > 0 for m in separation)}/{len(separation)}"
    )

    # Singletons: how close does the nearest other report come?
    single_best = [max(scores[(a, c)] for c in ids if c != a) for g in singles for a in groups[g]]
    print("singletons:")
    stats("best score to any other report", single_best)

    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

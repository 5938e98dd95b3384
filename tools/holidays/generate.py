#!/usr/bin/env python3
"""Generate workflows/calendars/china.toml: China's public holidays and make-up working days (调休).

Two independent PyPI packages are read and cross-checked, year by year:

* chinesecalendar (module ``chinese_calendar``): ``holidays`` maps every day off of each holiday
  period (weekends inside the period included) to its festival, ``workdays`` the make-up working
  days (weekend days that are working days), ``in_lieu_days`` the weekdays given off in exchange.
* holidays (``holidays.China``, category ``public``): statutory days plus "observed" days (补假)
  and substituted days off (休息日（由 X 调休）); the weekend days X that become working days are
  collected in ``weekend_workdays``. It does not list the plain Saturdays and Sundays that fall
  inside a holiday period, and for years without an official notice it only estimates by rule
  (its official arrangements are the years in ``ChinaStaticHolidays.special_public_holidays``).

Checks, for each year written out (a disagreement is printed and the script exits 1):
  1. the same weekdays off (holidays that are Monday..Friday);
  2. the same make-up working days;
  3. every date that ``holidays`` lists is in chinesecalendar's holidays;
  4. each run of consecutive chinesecalendar holidays is exactly one maximal run of days off
     per ``holidays`` (the day before and the day after it are working days there);
  5. the festival names agree (each of ``holidays``' statutory names is the run's name).
The in-lieu days (weekdays off swapped for a make-up day) are compared too, as a warning only:
they are not written out.

A year is written out when at least one package has its official arrangement; when only one
does, the file says so. Run: ``python3 tools/holidays/generate.py`` (from anywhere), then commit
workflows/calendars/china.toml.
"""

from __future__ import annotations

import datetime as dt
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import chinese_calendar
import holidays
from holidays.countries.china import ChinaStaticHolidays

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "workflows" / "calendars" / "china.toml"

# Years to look at; a year no package has an official arrangement for is skipped.
YEARS = (2025, 2026, 2027)

# The State Council notices. Neither package names a document number (chinesecalendar's
# scripts/data.py cites the gov.cn pages, holidays' China class the State Council Gazette
# pages); the numbers below were read from the notices' text as quoted in public sources.
#   2025: gov.cn/zhengce/content/202411/content_6986382.htm (chinesecalendar),
#         gov.cn/gongbao/2024/issue_11726/202411/content_6989767.html (holidays)
#   2026: gov.cn/zhengce/content/202511/content_7047090.htm (chinesecalendar),
#         gov.cn/gongbao/2025/issue_12406/202511/content_7048922.html (holidays)
# A year missing here gets the title only.
NOTICES = {
    2025: "国务院办公厅关于2025年部分节假日安排的通知（国办发明电〔2024〕12号）",
    2026: "国务院办公厅关于2026年部分节假日安排的通知（国办发明电〔2025〕7号）",
}

# chinese_calendar.Holiday values -> the names the notices use, in the notices' order.
CC_NAMES = {
    chinese_calendar.Holiday.new_years_day.value: "元旦",
    chinese_calendar.Holiday.spring_festival.value: "春节",
    chinese_calendar.Holiday.tomb_sweeping_day.value: "清明节",
    chinese_calendar.Holiday.labour_day.value: "劳动节",
    chinese_calendar.Holiday.dragon_boat_festival.value: "端午节",
    chinese_calendar.Holiday.national_day.value: "国庆节",
    chinese_calendar.Holiday.mid_autumn_festival.value: "中秋节",
}
ORDER = list(CC_NAMES.values())

# holidays' zh_CN names of statutory days -> festival (substituted days have no festival name).
H_NAMES = {n: n for n in ORDER} | {"农历除夕": "春节"}
H_SUFFIXES = ("（补假）", "（推定）", "（补假，推定）")

ONE_DAY = dt.timedelta(days=1)


def cc_year(year: int):
    """chinesecalendar's days off {date: festival} and make-up working days, or None."""
    off = {d: CC_NAMES[n] for d, n in chinese_calendar.holidays.items() if d.year == year}
    work = {d for d in chinese_calendar.workdays if d.year == year}
    in_lieu = {d for d in chinese_calendar.in_lieu_days if d.year == year}
    if not off:
        return None
    unknown = {n for d, n in chinese_calendar.holidays.items() if d.year == year and n not in CC_NAMES}
    assert not unknown, f"chinesecalendar {year}: unknown festival {unknown}"
    return off, work, in_lieu


def h_year(year: int):
    """holidays' calendar for the year (official or estimated) and whether it is official."""
    cal = holidays.China(years=range(year - 1, year + 2), categories=(holidays.PUBLIC,), language="zh_CN")
    off = {d: n for d, n in cal.items() if d.year == year}
    work = {d for d in cal.weekend_workdays if d.year == year}
    substituted = set()
    for entry in ChinaStaticHolidays.special_public_holidays.get(year, ()):
        if len(entry) >= 4:  # (to_month, to_day, from_month, from_day[, from_year]): a swapped day off
            substituted.add(dt.date(year, entry[0], entry[1]))
    official = year in ChinaStaticHolidays.special_public_holidays
    return cal, off, work, substituted, official


def runs(dates):
    """Maximal runs of consecutive dates, as lists."""
    out = []
    for d in sorted(dates):
        if out and out[-1][-1] + ONE_DAY == d:
            out[-1].append(d)
        else:
            out.append([d])
    return out


def run_name(festivals) -> str:
    """A period's name: its festivals in the notices' order, e.g. 国庆节、中秋节."""
    return "、".join(n for n in ORDER if n in festivals)


def h_festival(name: str) -> str | None:
    for part in name.split("; "):
        for suffix in H_SUFFIXES:
            part = part.removesuffix(suffix)
        if part in H_NAMES:
            return H_NAMES[part]
    return None


def cross_check(year, cc, h):
    """Disagreements (fatal) and warnings between the two packages for one year."""
    (cc_off, cc_work, cc_lieu), (cal, h_off, h_work, h_subst, _) = cc, h
    bad, warn = [], []
    iso = lambda ds: ", ".join(d.isoformat() for d in sorted(ds)) or "-"  # noqa: E731

    cc_wd = {d for d in cc_off if d.weekday() < 5}
    h_wd = {d for d in h_off if d.weekday() < 5}
    if cc_wd != h_wd:
        bad.append(f"weekdays off: only chinesecalendar {iso(cc_wd - h_wd)}; only holidays {iso(h_wd - cc_wd)}")
    if cc_work != h_work:
        bad.append(f"make-up working days: only chinesecalendar {iso(cc_work - h_work)}; "
                   f"only holidays {iso(h_work - cc_work)}")
    if extra := set(h_off) - set(cc_off):
        bad.append(f"days off in holidays but not in chinesecalendar: {iso(extra)}")
    for run in runs(cc_off):
        inside = [d for d in run if cal.is_working_day(d)]
        if inside:
            bad.append(f"period {run[0]}..{run[-1]}: holidays has working days inside it: {iso(inside)}")
        edges = [d for d in (run[0] - ONE_DAY, run[-1] + ONE_DAY) if not cal.is_working_day(d)]
        if edges:
            bad.append(f"period {run[0]}..{run[-1]}: holidays has days off right next to it: {iso(edges)}")
        name = run_name({cc_off[d] for d in run})
        for d in run:
            if d in h_off and (f := h_festival(h_off[d])) and f not in name.split("、"):
                bad.append(f"{d}: chinesecalendar says {name}, holidays says {h_off[d]}")
    if cc_lieu != h_subst:
        warn.append(f"in-lieu days (not written out): only chinesecalendar {iso(cc_lieu - h_subst)}; "
                    f"only holidays {iso(h_subst - cc_lieu)}")
    return bad, warn


def render(years, data, single_source, versions) -> str:
    cc_v, h_v = versions
    lines = [
        "# China's public holidays and make-up working days (调休), from the State Council's notices.",
        f"# Generated by tools/holidays/generate.py from chinesecalendar {cc_v} and holidays {h_v} (PyPI),",
        "# cross-checked; do not edit by hand: run `python3 tools/holidays/generate.py` and commit the result.",
    ]
    for year, source in sorted(single_source.items()):
        lines.append(f"# {year} was checked against only one source ({source}): the other package has no "
                     f"official {year} arrangement.")
    lines += [
        "# Local closures belong in a unit's own calendar file that extends this one.",
        'timezone = "Asia/Shanghai"',
        'weekend = ["sat", "sun"]',
        f"covers = [{', '.join(str(y) for y in years)}]",
        "",
        "# Public holidays (法定节假日 and the days off joined to them).",
        "holidays = [",
    ]
    off = sorted(d for y in years for d in data[y][0])
    work = sorted(d for y in years for d in data[y][1])
    lines += [f"  {d.isoformat()}," for d in off]
    lines += [
        "]",
        "",
        "# Make-up working days (调休上班日): weekend days that are working days.",
        "workdays = [",
    ]
    lines += [f"  {d.isoformat()}," for d in work]
    lines += ["]", "", "[notices]"]
    for y in years:
        lines.append(f'{y} = "{NOTICES.get(y, f"国务院办公厅关于{y}年部分节假日安排的通知")}"')
    lines += ["", "# The holiday period each day off belongs to.", "[names]"]
    for y in years:
        cc_off = data[y][0]
        for run in runs(cc_off):
            name = run_name({cc_off[d] for d in run})
            lines += [f'{d.isoformat()} = "{name}"' for d in run]
    return "\n".join(lines) + "\n"


def main() -> int:
    versions = (version("chinesecalendar"), version("holidays"))
    print(f"chinesecalendar {versions[0]}, holidays {versions[1]}")
    written, data, single_source, failed = [], {}, {}, False
    for year in YEARS:
        cc, h = cc_year(year), h_year(year)
        h_official = h[4]
        if cc is None and not h_official:
            print(f"{year}: no official arrangement in either package (holidays only estimates it): skipped")
            continue
        if cc is None or not h_official:
            have = "chinesecalendar" if cc else "holidays"
            lacks = "holidays" if cc else "chinesecalendar"
            print(f"{year}: only {have} has the official arrangement ({lacks} has none): written, "
                  f"checked against one source only")
            single_source[year] = have
            if cc is None:  # build the days off from holidays alone: its runs of days off
                # around each statutory or substituted day, named by festival.
                _, h_off, h_work, _, _ = h
                cal = h[0]
                off = {}
                for d0, n in h_off.items():
                    d = d0
                    while not cal.is_working_day(d - ONE_DAY):
                        d -= ONE_DAY
                    while not cal.is_working_day(d):
                        off.setdefault(d, set())
                        if f := h_festival(cal.get(d, "") or ""):
                            off[d].add(f)
                        d += ONE_DAY
                named = {}
                for run in runs(off):
                    name = run_name(set().union(*(off[d] for d in run)))
                    named |= {d: name for d in run}
                cc = (named, h_work, set())
            data[year] = cc
            written.append(year)
            continue
        bad, warn = cross_check(year, cc, h)
        for w in warn:
            print(f"{year}: warning: {w}")
        for b in bad:
            print(f"{year}: DISAGREEMENT: {b}")
        if bad:
            failed = True
        else:
            print(f"{year}: the two packages agree: {len(cc[0])} days off "
                  f"({sum(1 for d in cc[0] if d.weekday() < 5)} of them weekdays), "
                  f"{len(cc[1])} make-up working days")
        data[year] = cc
        written.append(year)
    if failed:
        print("not written: the packages disagree (see above)")
        return 1
    if not written:
        print("nothing to write")
        return 1
    for y in written:
        if y not in NOTICES:
            print(f"{y}: no document number known: the notice is cited by title only")
    text = render(written, data, single_source, versions)
    parsed = tomllib.loads(text)  # round-trip: what was written is what was checked
    assert parsed["holidays"] == sorted(d for y in written for d in data[y][0])
    assert parsed["workdays"] == sorted(d for y in written for d in data[y][1])
    assert set(parsed["names"]) == {d.isoformat() for y in written for d in data[y][0]}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(REPO)}: covers {written}, "
          f"{len(parsed['holidays'])} holidays, {len(parsed['workdays'])} make-up working days")
    return 0


if __name__ == "__main__":
    sys.exit(main())

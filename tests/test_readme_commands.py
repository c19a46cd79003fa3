"""Every command README.md prints is exercised by a test or by .ci/run, so none can rot unnoticed.

A command is a line in a fenced code block that starts with `python -m MODULE` (or runs one after
`ray job submit ... --`). It counts as exercised when a file in tests/ or .ci/run runs MODULE
(names it: an import, `-m MODULE`, or the command itself) and, among those files, every flag of the
command appears as a literal, and so does every lower-case word value it gives a flag (`--scale demo`,
`--source smoke`; synopsis alternatives like `smoke|demo|full` each count). This is a necessary
condition, not a proof that the exact line runs; long commands run by a quick variant are listed in
QUICK_VARIANTS with the variant that stands in for them.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# (module, flag, value) -> what runs instead: commands too long or needing GPUs, downloads or a cluster.
QUICK_VARIANTS: dict[tuple[str, str, str], str] = {
    ("study.run", "--scale", "full"): "needs GPUs and the downloads: tests/test_rehearsal.py runs the full scale's "
    "spec on stand-in files, tests/test_preflight.py its preflight",
    ("benchmarks.gpu_mfu", "--source", "config"): "the thesis's real sizes (CPU-hours here): --source smoke runs the same code",
    ("benchmarks.first_gpu_check", "--source", "config"): "the thesis's real sizes on CUDA: --quick --device cpu runs "
    "the same code on stand-ins (it sets --source smoke)",
}
FREE_VALUE_FLAGS = {"--name", "--storage", "--address", "--config", "--resume", "--optuna-storage", "--out", "--json"}
_FLAG = re.compile(r"^--[a-z][a-z0-9-]*$")
_WORD = re.compile(r"^[a-z][a-z0-9-]*$")


def readme_commands(text: str) -> list[str]:
    """The `python -m` command lines of the fenced code blocks (continuations joined, comments cut)."""
    commands = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, re.DOTALL | re.MULTILINE):
        for line in re.sub(r"\s*\\\n\s*", " ", block).splitlines():
            line = line.split("  #", 1)[0].strip()
            start = line.find("python -m ")
            if start == 0 or (start > 0 and line[:start].rstrip().endswith(" --")):
                commands.append(re.split(r"\s[|>]\s", line[start:])[0])  # what a pipe or redirect does is the shell's
    return commands


def flags_and_values(command: str) -> tuple[str, list[str], list[tuple[str, str]]]:
    """(module, flags, (flag, word value) pairs) of one command."""
    tokens = command.replace("[", " ").replace("]", " ").split()
    module = tokens[2]
    flags, values, current = [], [], None
    for token in tokens[3:]:
        token = token.strip("'\"")
        if _FLAG.match(token):
            current = token
            flags.append(token)
        elif current and current not in FREE_VALUE_FLAGS:
            values += [(current, alternative) for alternative in token.split("|") if _WORD.match(alternative)]
    return module, flags, values


def _sources() -> dict[Path, str]:
    files = sorted((ROOT / "tests").glob("*.py")) + [ROOT / ".ci" / "run"]
    return {path: path.read_text(encoding="utf-8") for path in files if path.name != Path(__file__).name}


def uncovered(commands: list[str], sources: dict[Path, str]) -> list[str]:
    missing = []
    for command in commands:
        module, flags, values = flags_and_values(command)
        package, _, name = module.rpartition(".")
        runs = rf"(?<![\w.]){re.escape(module)}(?!\w)" + (rf"|from {re.escape(package)} import [\w, ]*\b{name}\b" if package else "")
        runners = [text for text in sources.values() if re.search(runs, text)]
        if not runners:
            missing.append(f"{command}  (no test or .ci/run runs {module})")
            continue
        stood_in = {flag for flag, value in values if (module, flag, value) in QUICK_VARIANTS}  # flag and value
        absent = [flag for flag in flags if flag not in stood_in and not _literal(flag, runners)]
        absent += [f"{flag} {value}" for flag, value in values if flag not in stood_in and not _literal(value, runners)]
        if absent:
            missing.append(f"{command}  (not exercised: {', '.join(dict.fromkeys(absent))})")
    return missing


def _literal(word: str, texts: list[str]) -> bool:
    """`word` stands quoted or alone (a string literal, or a word of .ci/run's command lines)."""
    return any(re.search(rf"""["'\s]{re.escape(word)}["'\s,)]""", text) for text in texts)


def test_every_readme_command_is_exercised_by_a_test_or_ci():
    commands = readme_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(commands) > 10  # the parser finds them
    missing = uncovered(commands, _sources())
    assert not missing, "README commands no test or .ci/run exercises:\n" + "\n".join(missing)


def test_the_check_finds_an_unexercised_command_and_flag():
    readme = "```bash\npython -m benchmarks.new_thing --fast\npython -m study.run --grid thesis \\\n  --scale demo  # x\n```\n"
    commands = readme_commands(readme)
    assert commands == ["python -m benchmarks.new_thing --fast", "python -m study.run --grid thesis --scale demo"]
    sources = {Path("t.py"): 'main(["--grid", "thesis", "--scale", "smoke"])  # from study.run import main'}
    assert uncovered(commands, sources) == [
        "python -m benchmarks.new_thing --fast  (no test or .ci/run runs benchmarks.new_thing)",
        "python -m study.run --grid thesis --scale demo  (not exercised: --scale demo)",
    ]
    assert flags_and_values("python -m study.run --grid thesis [--scale smoke|demo|full]")[2] == [
        ("--grid", "thesis"), ("--scale", "smoke"), ("--scale", "demo"), ("--scale", "full")
    ]

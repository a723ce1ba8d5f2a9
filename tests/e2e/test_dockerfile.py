"""Static checks of the Dockerfile (Docker cannot run here).

The Dockerfile is parsed into instructions (continuation lines joined,
comments dropped) and checked for what issue 4 asks: multi-stage, a slim
Python base, a non-root user, 53/udp + 53/tcp exposed, a HEALTHCHECK on
/healthz, no capability beyond NET_BIND_SERVICE, and a small build context
(.dockerignore). hadolint runs too when it is installed.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass(frozen=True, slots=True)
class Instruction:
    line: int
    op: str  # upper-case keyword
    args: str  # rest of the (joined) line


@dataclass(frozen=True, slots=True)
class Stage:
    base: str
    name: str | None
    body: tuple[Instruction, ...]

    def ops(self, op: str) -> list[Instruction]:
        return [i for i in self.body if i.op == op]


def parse(text: str) -> list[Instruction]:
    out: list[Instruction] = []
    buf: list[str] = []
    start = 0
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue  # comment lines inside a continued instruction
        if not buf:
            start = no
        if line.endswith("\\"):
            buf.append(line[:-1].strip())
            continue
        buf.append(line)
        joined = " ".join(p for p in buf if p)
        buf = []
        op, _, args = joined.partition(" ")
        out.append(Instruction(start, op.upper(), args.strip()))
    assert not buf, "Dockerfile ends inside a continued line"
    return out


def stages(instructions: list[Instruction]) -> list[Stage]:
    result: list[Stage] = []
    base: str | None = None
    name: str | None = None
    body: list[Instruction] = []
    for ins in instructions:
        if ins.op == "FROM":
            if base is not None:
                result.append(Stage(base, name, tuple(body)))
            words = [w for w in ins.args.split() if not w.startswith("--")]
            base = words[0]
            name = words[2].lower() if len(words) >= 3 and words[1].upper() == "AS" else None
            body = []
        else:
            assert base is not None or ins.op in ("ARG",), f"line {ins.line}: {ins.op} before FROM"
            body.append(ins)
    assert base is not None, "no FROM"
    result.append(Stage(base, name, tuple(body)))
    return result


def exec_words(args: str) -> list[str]:
    """Words of a CMD/ENTRYPOINT/RUN: JSON (exec) form or shell form."""
    args = args.strip()
    if args.startswith("["):
        import json

        return [str(w) for w in json.loads(args)]
    return shlex.split(args)


@pytest.fixture(scope="module")
def parsed() -> list[Stage]:
    assert DOCKERFILE.is_file(), "Dockerfile missing at the repository root"
    return stages(parse(DOCKERFILE.read_text()))


def test_parser_handles_continuations_comments_and_stages() -> None:
    text = (
        "# syntax=docker/dockerfile:1\n"
        "ARG PY=3.11\n"
        "FROM python:${PY}-slim AS build\n"
        "RUN pip install \\\n"
        "    # a comment inside\n"
        "    fedns\n"
        "FROM python:3.11-slim\n"
        "COPY --from=build /x /x\n"
        "USER 10053\n"
    )
    got = stages(parse(text))
    assert [(s.base, s.name) for s in got] == [("python:${PY}-slim", "build"),
                                              ("python:3.11-slim", None)]
    assert got[0].body[0].args == "pip install fedns"
    assert got[0].body[0].line == 4
    assert got[1].ops("USER")[0].args == "10053"


def test_multi_stage_with_a_slim_python_final_image(parsed: list[Stage]) -> None:
    assert len(parsed) >= 2, "expected a build stage and a runtime stage"
    final = parsed[-1]
    base = final.base.lower()
    assert re.match(r"^(docker\.io/(library/)?)?python:", base), final.base
    assert "slim" in base, f"final base {final.base} is not a slim image"
    assert ":latest" not in base and base != "python"
    copies = [c.args for c in final.ops("COPY")]
    assert any(a.startswith("--from=") for a in copies), "runtime stage copies no build output"
    # compilers and pip caches stay in the build stage
    for run in final.ops("RUN"):
        assert not re.search(r"\b(gcc|build-essential|g\+\+)\b", run.args), run


def test_runs_as_a_non_root_user(parsed: list[Stage]) -> None:
    users = parsed[-1].ops("USER")
    assert users, "final stage has no USER"
    user = users[-1].args.split(":")[0]
    assert user not in ("root", "0"), users[-1]
    last = max(i.line for i in parsed[-1].body)
    # nothing after USER switches back
    assert all(i.op != "USER" or i.args.split(":")[0] not in ("root", "0")
               for i in parsed[-1].body if i.line <= last)


def test_exposes_dns_over_udp_and_tcp(parsed: list[Stage]) -> None:
    exposed: set[str] = set()
    for e in parsed[-1].ops("EXPOSE"):
        for word in e.args.split():
            exposed.add(word if "/" in word else f"{word}/tcp")
    assert {"53/udp", "53/tcp"} <= {w.lower() for w in exposed}, exposed


def test_healthcheck_asks_healthz_with_a_timeout(parsed: list[Stage]) -> None:
    checks = parsed[-1].ops("HEALTHCHECK")
    assert len(checks) == 1, "exactly one HEALTHCHECK in the final stage"
    args = checks[0].args
    assert "/healthz" in args
    assert re.search(r"--timeout=\d+", args), "HEALTHCHECK without --timeout"
    assert " CMD " in f" {args} ", args


def test_entrypoint_is_fedns_and_capabilities_stay_minimal(parsed: list[Stage]) -> None:
    final = parsed[-1]
    entry = final.ops("ENTRYPOINT") or final.ops("CMD")
    assert entry, "no ENTRYPOINT/CMD"
    words = exec_words(entry[-1].args)
    assert any(Path(w).name == "fedns" for w in words), words
    for stage in parsed:
        for run in stage.ops("RUN"):
            for cap in re.findall(r"cap_[a-z_]+", run.args.lower()):
                assert cap == "cap_net_bind_service", f"line {run.line}: {cap}"
            assert "chmod u+s" not in run.args and "chmod 4" not in run.args, run


def test_no_remote_add_and_no_secrets_in_env(parsed: list[Stage]) -> None:
    for stage in parsed:
        for add in stage.ops("ADD"):
            assert not re.search(r"https?://", add.args), f"line {add.line}: remote ADD"
        for env in stage.ops("ENV") + stage.ops("ARG"):
            assert not re.search(r"(TOKEN|PASSWORD|SECRET|KEY)\s*=\s*\S", env.args,
                                 re.IGNORECASE), f"line {env.line}: secret baked in"


def test_build_context_is_small() -> None:
    assert DOCKERIGNORE.is_file(), ".dockerignore missing"
    patterns = {p.strip().rstrip("/") for p in DOCKERIGNORE.read_text().splitlines()
                if p.strip() and not p.startswith("#")}
    for must in (".git", "tests", "bench"):
        assert any(p.lstrip("*/").startswith(must) for p in patterns), f"{must} not ignored"


def test_hadolint_is_clean() -> None:
    exe = shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint is not installed (no Debian/PyPI package ships it); "
                    "the static checks above cover the rules issue 4 asks for")
    proc = subprocess.run([exe, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr

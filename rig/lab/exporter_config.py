"""The labgrid exporter configuration of a bench PC, and the place commands that go with it.

One group per bench, named after its place, holding one ``PackrigBench`` resource
(:mod:`rig.lab.place_bench`)::

    ## packrig bench 'lab-bench-1' ...
    lab-bench-1:
      PackrigBench:
        bench: lab-bench-1
        kind: real
        psu: TCPIP0::192.168.10.11::5025::SOCKET
        ...
        bench_json: '{"bench": {"name": "lab-bench-1", "clock": "wall", ...}, ...}'

labgrid renders an exporter file with Jinja2 before reading it as YAML, with ``#`` as Jinja's line
statement prefix: comments are written ``##`` and the file is checked to hold nothing Jinja would
read (``{{``, ``{%``, ``{#``, a line starting with ``#``), so what the exporter publishes is what
was written here.
"""
from __future__ import annotations

from pathlib import Path

from rig.errors import ConfigError
from rig.lab.place_bench import RESOURCE_CLASS

JINJA_MARKS = ("{{", "{%", "{#")


def place_match(exporter: str, place: str) -> str:
    """The place's resource match, ``exporter/group/class``."""
    return f"{exporter}/{place}/{RESOURCE_CLASS}"


def exporter_yaml(place: str, params: dict, tags: dict[str, str]) -> str:
    """The exporter file's text for one bench; :raises ConfigError: a value Jinja would change."""
    try:
        import yaml
    except ImportError:
        raise ConfigError("packrig export", "", "needs PyYAML, which labgrid brings: "
                                                "pip install 'packrig[lab]'") from None

    body = yaml.safe_dump({place: {RESOURCE_CLASS: params}}, sort_keys=False, default_flow_style=False,
                          width=1 << 20)  # one line per parameter, however long
    for n, line in enumerate(body.splitlines(), start=1):
        if line.lstrip().startswith("#") or any(mark in line for mark in JINJA_MARKS):
            raise ConfigError(f"exporter config of place {place}", f"line {n}",
                              f"{line.strip()!r} would be read by labgrid's Jinja2 pass; rename what holds it")
    head = (f"## packrig bench {params.get('bench')!r} ({params.get('kind')}), written by packrig export --labgrid.\n"
            f"## Run it with: labgrid-exporter -c COORDINATOR:PORT -n {place} THIS_FILE\n"
            f"## (or python -m rig.lab.exporter ..., which makes the bench safe whenever the place is released)\n"
            f"## Place tags: {' '.join(f'{k}={v}' for k, v in tags.items())}\n")
    return head + body


def place_commands(place: str, exporter: str, tags: dict[str, str], coordinator: str = "COORDINATOR:PORT") -> str:
    """The ``labgrid-client`` commands that create the place once (``--serve`` does them itself)."""
    c = f"labgrid-client -x {coordinator} -p {place}"
    return "\n".join([f"{c} create", f"{c} add-match {place_match(exporter, place)}",
                      f"{c} set-tags {' '.join(f'{k}={v}' for k, v in tags.items())}"]) + "\n"


def write(path: Path, text: str) -> Path:
    """Write the file whole (aside, then renamed: an exporter never reads half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path

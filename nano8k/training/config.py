"""The fit config, parsed once: nano8k's LightningCLI, its config-only parse, and config files that name a base.

A config file may name the file it layers on with a top-level ``base:`` key (a path relative to that file's folder).
``expand_bases`` turns ``--config stage.yaml`` into ``--config base.yaml --config stage.yaml``, so the parser reads
the base first and the stage file's values override it, as LightningCLI does with several ``--config``: mappings
merge key by key, lists (``trainer.callbacks``) replace. ``docs/configs.md`` has the shipped layout.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from nano8k.errors import ConfigError, UserError, one_line

BASE_KEY = "base"  # a config file's top-level key naming the config it layers on
CONFIG_FLAGS = ("--config", "-c")
# LightningCLI's own optimizer options: nano8k leaves them out of its parser (NanoASRModule.configure_optimizers builds
# the AdamW groups and the schedule from model.*), and names the model.* keys to anyone who gives them
LIGHTNING_OPTIMIZER_OPTIONS = ("--optimizer", "--lr_scheduler")
OPTIMIZER_KEYS = (
    "model.lr",
    "model.weight_decay",
    "model.lr_multipliers",
    "model.weight_decay_overrides",
    "model.decay_norm_and_bias",
    "model.betas",
    "model.optimizer_impl",
    "model.scheduler",
    "model.warmup_steps",
    "model.min_lr_ratio",
)
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")

# a parse from Python (parse_config, the fit command's run(args)) is what this module does on purpose
warnings.filterwarnings("ignore", message=r".*LightningCLI's args parameter is intended to run from within Python.*")

Preflight = Callable[[Any], None]  # called with the parsed config before anything is built


# -- config files ---------------------------------------------------------------------------------------------
def load_config(path: str | Path) -> dict[str, Any]:
    """One YAML config file as written (its ``base:`` key kept); a missing file, YAML error or non-mapping is an
    error naming the file (and, for YAML, the line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    try:
        with path.open(encoding="utf-8") as stream:  # a stream: PyYAML's message names the file and line
            data = yaml.safe_load(stream)
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({one_line(err)})") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of sections (trainer, model, data), got {type(data).__name__}")
    return data


def base_of(config: Mapping[str, Any], folder: str | Path, source: str) -> Path | None:
    """The file ``config``'s ``base:`` key names, resolved from ``folder`` (the config file's own); None without."""
    base = config.get(BASE_KEY)
    if base is None:
        return None
    if not isinstance(base, str) or not base:
        raise ValueError(f"{source}: {BASE_KEY}: expected the path of the config this file layers on, got {base!r}")
    return Path(folder) / base


def base_chain(path: str | Path) -> list[Path]:
    """``path`` and the bases it names, the first base first; a base naming itself again is an error."""
    chain = [Path(path)]
    while (base := base_of(load_config(chain[0]), chain[0].parent, str(chain[0]))) is not None:
        if base.resolve() in {p.resolve() for p in chain}:
            raise ValueError(f"{chain[0]}: {BASE_KEY}: {base} is already in the chain ({', '.join(map(str, chain))})")
        if not base.is_file():
            raise FileNotFoundError(f"{chain[0]}: {BASE_KEY}: {base}: config file not found")
        chain.insert(0, base)
    return chain


def layered(over: Any, under: Any) -> Any:
    """``over`` on ``under`` as jsonargparse layers two configs: mappings merge key by key (a mapping naming another
    ``class_path`` replaces), anything else (lists, scalars, null) replaces."""
    if not (isinstance(over, Mapping) and isinstance(under, Mapping)):
        return over
    if "class_path" in over and over.get("class_path") != under.get("class_path"):
        return dict(over)
    out = dict(under)
    for key, value in over.items():
        out[key] = layered(value, under[key]) if key in under else value
    return out


def layered_config(path: str | Path) -> dict[str, Any]:
    """``path`` over its bases as one mapping without ``base:`` keys: a file that stands alone (a sweep point's,
    say) and parses as ``--config path`` does."""
    merged: dict[str, Any] = {}
    for file in base_chain(path):
        merged = layered({k: v for k, v in load_config(file).items() if k != BASE_KEY}, merged)
    return merged


def _inline_base(text: str) -> str | None:
    """The ``base:`` of a config given as YAML text (``shipped_config``), relative to the current folder."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None  # jsonargparse names it
    base = data.get(BASE_KEY) if isinstance(data, dict) else None
    return base if isinstance(base, str) and base else None


def expand_bases(args: Sequence[str]) -> list[str]:
    """``args`` with each ``--config FILE`` preceded by ``--config BASE`` for every base the file names (the first
    base first); a config given as YAML text names its base relative to the current folder."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        flag, value = (arg, args[i + 1]) if arg in CONFIG_FLAGS and i + 1 < len(args) else (None, None)
        if arg.startswith("--config="):
            flag, value = "--config", arg.split("=", 1)[1]
        if flag is None:
            out.append(arg)
            i += 1
            continue
        if os.path.isfile(value):
            bases = base_chain(value)[:-1]
        else:
            inline = _inline_base(value)
            bases = base_chain(inline) if inline else []
        for base in bases:
            out += ["--config", str(base)]
        out += [arg] if arg.startswith("--config=") else [flag, value]
        i += 1 if arg.startswith("--config=") else 2
    return out


def config_files(args: Sequence[str]) -> list[str]:
    """The config files ``--config`` / ``-c`` name in ``args`` (values that are no file, YAML text, left out)."""
    named = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg in CONFIG_FLAGS]
    named += [arg.split("=", 1)[1] for arg in args if arg.startswith("--config=")]
    return [path for path in named if os.path.isfile(path)]


def check_config_files(args: Sequence[str]) -> None:
    """Read each config file ``args`` names, and its bases, first: a file that is not valid YAML is a
    ``ConfigError`` naming it and the line (jsonargparse's own message says ``"<unicode string>"``)."""
    for path in config_files(args):
        try:
            for file in base_chain(path):
                load_config(file)
        except (ValueError, FileNotFoundError) as err:
            raise ConfigError(str(err)) from err


def named_sources(config: Any) -> str:
    """The config files a parsed ``config`` was read from, bases left out (messages name the file a user gave)."""
    sources = config.get("config") if hasattr(config, "get") else None
    sources = [str(s) for s in (sources if isinstance(sources, list) else [sources]) if s]
    bases = set()
    for source in sources:
        if os.path.isfile(source):
            try:
                bases.update(str(p.resolve()) for p in base_chain(source)[:-1])
            except (ValueError, FileNotFoundError):
                continue
    named = [s for s in sources if not os.path.isfile(s) or str(Path(s).resolve()) not in bases]
    return ", ".join(named) or "the command line's config"


# -- the parser -----------------------------------------------------------------------------------------------
def refuse_optimizer_options(args: Sequence[str]) -> None:
    """Refuse LightningCLI's ``--optimizer`` / ``--lr_scheduler`` (and their ``.init_args``) with the keys that do
    configure nano8k's optimizer: they would replace its AdamW groups, weight decay rules and warm-up."""
    given = sorted({arg.split("=", 1)[0].split(".", 1)[0] for arg in args} & set(LIGHTNING_OPTIMIZER_OPTIONS))
    if given:
        raise ConfigError(
            f"{' and '.join(given)}: not an option of nano8k fit, which builds AdamW (one group per "
            "module, no weight decay on biases and norms) and its learning-rate schedule itself; "
            f"configure them with {', '.join(OPTIMIZER_KEYS)}"
        )


class NanoCLI(LightningCLI):
    """LightningCLI without subcommands: parses one config (its bases first), then runs ``trainer.fit``. Lightning's
    ``--optimizer`` / ``--lr_scheduler`` are not offered (``refuse_optimizer_options``). ``preflight`` (the fit
    command passes the checks' ``enforce``) sees the parsed config before anything is built."""

    def __init__(self, *args: Any, preflight: Preflight | None = None, **kwargs: Any) -> None:
        given = [str(a) for a in (kwargs.get("args") or sys.argv[1:])]
        refuse_optimizer_options(given)
        kwargs["args"] = expand_bases(given)
        self.preflight = preflight
        super().__init__(*args, auto_configure_optimizers=False, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--ckpt_path",
            type=str | None,
            default=None,
            help="checkpoint to resume from; 'last' = newest last.ckpt in the ModelCheckpoint dirpath",
        )
        parser.add_argument("--preflight", type=bool, default=True, help="run nano8k.preflight checks before fit")
        parser.add_argument("--preflight_skip", type=list[str], default=[], help="preflight checks to skip")
        parser.add_argument(
            f"--{BASE_KEY}",
            type=str | None,
            default=None,
            help="a config file's base config (read first; see nano8k.training.config)",
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, then drop the ``base:`` entry: it was read (``expand_bases``), and a saved run config stands alone."""
        super().parse_arguments(parser, args)
        self.config.pop(BASE_KEY, None)

    def before_instantiate_classes(self) -> None:
        """Preflight reads the config only, so it speaks before the model is built (a wrong model_dir, say); an
        output folder that cannot be written is refused then too, with or without preflight."""
        from nano8k.training.outputs import output_folders, require_writable

        if self.preflight is not None and self.config.get("preflight", True):
            self.preflight(self.config)
        require_writable(output_folders(self.config.as_dict()))

    def instantiate_classes(self) -> None:
        """Build model, data and trainer; a constructor's refusal of a value becomes a ``ConfigError``."""
        try:
            super().instantiate_classes()
        except UserError:
            raise
        except (ValueError, FileNotFoundError) as err:  # our constructors validate their arguments this way
            raise ConfigError(str(err)) from err


class ConfigOnlyCLI(NanoCLI):
    """Parses a config exactly as ``nano8k.fit`` does (bases and overrides included) and builds nothing; it does
    not seed the process either (``seed_everything`` stays as the config gives it)."""

    def _set_seed(self) -> None:
        return

    def before_instantiate_classes(self) -> None:
        return

    def instantiate_classes(self) -> None:
        return


def parse_config(args: Sequence[str]) -> Any:
    """The jsonargparse Namespace ``nano8k.fit`` would train with for ``args`` (``--config X --data.y v ...``):
    every value typed, every default the classes' own, nothing instantiated."""
    from nano8k.data.pipeline.datamodule import TelephoneDataModule
    from nano8k.training.module import NanoASRModule

    return ConfigOnlyCLI(
        NanoASRModule, TelephoneDataModule, subclass_mode_model=False, run=False, args=list(args)
    ).config


def parse_file(path: str | Path, overrides: Sequence[str] = ()) -> Any:
    """The Namespace ``nano8k.fit --config PATH OVERRIDES...`` would train with; a missing or malformed file (or
    base) is named first, not in a parser usage message."""
    for file in base_chain(path):
        load_config(file)
    return parse_config(["--config", str(path), *overrides])


# -- reading a parsed config ----------------------------------------------------------------------------------
def short_class(class_path: str) -> str:
    """``lightning.pytorch.callbacks.ModelCheckpoint`` -> ``ModelCheckpoint``."""
    return str(class_path).rpartition(".")[2]


def callback_args(config: Any, class_name: str) -> list[tuple[str, Any]]:
    """(config key, init_args Namespace) of each ``trainer.callbacks`` entry of class ``class_name`` (short name),
    keyed as the checks' messages name it (``trainer.callbacks.StageSwitch``)."""
    callbacks = config.trainer.callbacks or []
    return [
        (f"trainer.callbacks.{class_name}", callback.init_args)
        for callback in callbacks
        if short_class(callback.class_path) == class_name
    ]


def plain(value: Any) -> Any:
    """YAML-like plain data: Namespaces and dataclasses -> dicts, tuples -> lists, numeric strings -> numbers."""
    if hasattr(value, "as_dict") and callable(value.as_dict):
        return plain(value.as_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        number = float(value)
        return int(number) if number.is_integer() and not re.search(r"[.eE]", value) else number
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return repr(value)


def fold_classes(node: Any, path: tuple[str, ...] = (), class_nodes: dict[tuple[str, ...], str] | None = None) -> Any:
    """Plain data with ``class_path``/``init_args`` folded into one mapping ({class_path: ShortName, **args}) and
    lists of them into {ClassName: args} (a repeated class gets a ``+``): the dotted keys the checks and the
    alignment table name (``trainer.callbacks.ModelCheckpoint.save_top_k``). ``class_nodes`` collects the folded
    path and full class_path of each class node."""
    if isinstance(node, Mapping):
        if "class_path" in node:
            if class_nodes is not None:
                class_nodes[path] = str(node["class_path"])
            args = {**(node.get("init_args") or {}), **(node.get("dict_kwargs") or {})}
            return {
                "class_path": short_class(node["class_path"]),
                **{k: fold_classes(v, (*path, k), class_nodes) for k, v in args.items()},
            }
        return {str(k): fold_classes(v, (*path, str(k)), class_nodes) for k, v in node.items()}
    if isinstance(node, list) and node and all(isinstance(v, Mapping) and "class_path" in v for v in node):
        out: dict[str, Any] = {}
        for item in node:
            name = short_class(item["class_path"])
            while name in out:
                name += "+"
            out[name] = fold_classes(item, (*path, name), class_nodes)
        return out
    return plain(node)


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(the command's own arguments, fit's dotted overrides): ``--model.lr 1e-4`` / ``--data.x=v`` go to the second
    list with their value, for commands that check or run a config as ``nano8k.fit`` would with those overrides."""
    own: list[str] = []
    overrides: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--") and "." in arg.split("=", 1)[0]:
            takes_next = "=" not in arg and i + 1 < len(argv)
            overrides += argv[i : i + 2] if takes_next else [arg]
            i += 2 if takes_next else 1
        else:
            own.append(arg)
            i += 1
    return own, overrides

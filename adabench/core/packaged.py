"""Optimizers by reference: any ``torch.optim.Optimizer`` subclass of an installed package, named in a study as
``module.path:ClassName`` (``torch.optim:NAdam``, ``prodigyopt:Prodigy``, ``schedulefree:AdamWScheduleFree``).

No wrapper class is written. Its hyperparameters are its constructor's keyword arguments, typed as core.arguments
types the registry's (annotations, else the defaults' types), with no ranges: a name such as ``rho`` means other
things in other packages, so the constructor itself judges a value (``check_setting`` builds it once on dummy
parameters while the config is checked, and names the hyperparameter it refuses).

What the training loop must know is read once, by a probe on dummy parameters (``resolve``): whether ``step``
needs a closure (LBFGS), whether the optimizer switches between ``train()`` and ``eval()`` (schedule-free),
whether a step draws random numbers, and that its ``state_dict`` survives a checkpoint. It is not known to be
elementwise, so a population gives each member an instance of its own over tensors of the member's own shapes
(adabench.core.population).

A run's identity names the package's distribution and version (Lion of one package is not Lion of another, and
an upgrade may change what it computes); its key writes the reference with ``.`` for ``:`` (no ``:`` in paths).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import hashlib
import importlib
import inspect
import io
import json
import re
import typing
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import torch

from .arguments import Argument, constructor_arguments, refuse_unknown
from .identity import key_name

# module path, a colon, a class name (a nested class is refused: the key's name would be ambiguous)
REFERENCE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$")
# a config value of an argument that neither an annotation nor its default types (default None)
UNTYPED = {"anyOf": [{"type": ["number", "boolean", "string", "null"]},
                     {"type": "array", "items": {"type": ["number", "boolean", "string", "null"]}}]}
# what the probe sees of a second-order optimizer (Hutchinson's Hessian estimates, backward(create_graph=True))
SECOND_ORDER = re.compile(r"hessian|create_graph|grad_fn", re.I)


class ReferenceError(ValueError):
    """A reference that names no usable optimizer, or a setting its constructor refuses (``name``: the
    hyperparameter at fault, where one is)."""

    def __init__(self, message: str, name: str | None = None):
        super().__init__(message)
        self.name = name


def is_reference(name: str) -> bool:
    """Whether an optimizer name is a reference (registry names have no colon) or a study's alias of one."""
    return ":" in name or name in ALIASES


@dataclass(frozen=True)
class Fallback:
    """The optimizer of the tensors a 2-D-only optimizer (Muon) does not take: biases, convolution kernels."""

    optimizer: str  # a registry name or a reference
    hyperparameters: dict  # canonical (adabench.core.optim.canonical_hyperparameters)
    main_ndim: tuple[int, ...]  # the dimensions of the tensors the main optimizer takes
    package: dict | None  # the fallback's package and version, where it is a reference
    make: typing.Callable = field(repr=False)  # params -> the fallback optimizer (adabench.core.optim builds it)

    def identity(self) -> dict:
        identity = {"optimizer": self.optimizer, "hyperparameters": dict(self.hyperparameters),
                    "main_ndim": list(self.main_ndim)}
        return {**identity, "package": self.package} if self.package else identity


@dataclass(frozen=True, eq=False)  # one object per reference or alias (cached): hashed by identity
class Packaged:
    """A resolved reference (or a study's alias of one, with a fallback): its class, where it comes from, its
    hyperparameters and what its probe saw."""

    name: str  # what a study calls it: the reference, or the alias of its `packaged` section
    reference: str
    cls: type
    distribution: str | None
    version: str
    arguments: dict[str, Argument]
    needs_closure: bool
    has_modes: bool
    draws_random: bool = False
    fallback: Fallback | None = None

    def identity(self) -> dict:
        """What a run's identity adds for it: the optimizer's package and version (and its fallback's)."""
        identity = {"reference": self.reference, "distribution": self.distribution, "version": self.version}
        return {**identity, "fallback": self.fallback.identity()} if self.fallback else identity

    def build(self, params, hyperparameters: dict):
        """The optimizer over ``params``; a list where the constructor's default is a tuple is given as a tuple.
        With a fallback: a SplitOptimizer, the class over the tensors of ``main_ndim`` dimensions, the fallback
        over the rest."""
        refuse_unknown("optimizer", self.name, "hyperparameter", hyperparameters, self.arguments)
        given = {name: tuple(value) if isinstance(self.arguments[name].default, tuple) and isinstance(value, list)
                 else value for name, value in hyperparameters.items()}
        if self.fallback is None:
            return self.cls(params, **given)
        params = list(params)
        main = [p for p in params if p.ndim in self.fallback.main_ndim]
        rest = [p for p in params if p.ndim not in self.fallback.main_ndim]
        return SplitOptimizer(self.cls(main, **given) if main else None, self.fallback.make(rest) if rest else None)

    def assignment(self, shapes: dict[str, tuple]) -> dict[str, list[str]] | None:
        """Which tensors (by name) each optimizer of a split takes, for the run's record; None without a split."""
        if self.fallback is None:
            return None
        main = [name for name, shape in shapes.items() if len(shape) in self.fallback.main_ndim]
        return {self.reference: main, self.fallback.optimizer: [name for name in shapes if name not in main]}


class SplitOptimizer:
    """Two optimizers stepped as one (timm's and pytorch-optimizer's factories pair Muon with AdamW the same way):
    ``main`` over the tensors it takes, ``fallback`` over the rest; either is None where it has no tensor. Its
    state_dict holds both, under "main" and "fallback"."""

    def __init__(self, main, fallback):
        self.parts = {name: part for name, part in (("main", main), ("fallback", fallback)) if part is not None}

    @property
    def param_groups(self) -> list[dict]:
        return [group for part in self.parts.values() for group in part.param_groups]

    def step(self, closure=None):
        for part in self.parts.values():
            part.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for part in self.parts.values():
            part.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {name: part.state_dict() for name, part in self.parts.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, part in self.parts.items():
            part.load_state_dict(state[name])

    def train(self) -> None:  # forwarded to a part that switches modes (schedule-free as a fallback)
        for part in self.parts.values():
            if callable(getattr(part, "train", None)):
                part.train()

    def eval(self) -> None:
        for part in self.parts.values():
            if callable(getattr(part, "eval", None)):
                part.eval()


@functools.cache
def distributions_of_modules() -> dict[str, list[str]]:
    """Top-level module -> distributions, read once per process (a scan of every installed package: ~1 s)."""
    return metadata.packages_distributions()


def distribution_of(cls: type) -> tuple[str | None, str]:
    """(distribution, version) of the installed package that holds ``cls``; the version without its local label
    (torch's 2.14.1+cu130 and 2.14.1+cpu compute alike: one identity). A module of no distribution (a file on
    PYTHONPATH) is named by the digest of its source."""
    top = cls.__module__.split(".")[0]
    names = distributions_of_modules().get(top) or []
    if names:  # named as PEP 503 normalises it: pytorch_optimizer and pytorch-optimizer are one distribution
        return re.sub(r"[-_.]+", "-", names[0]).lower(), metadata.version(names[0]).split("+")[0]
    source = inspect.getsourcefile(cls)
    digest = hashlib.sha256(Path(source).read_bytes()).hexdigest()[:12] if source else "unknown"
    return None, f"source sha256:{digest}"


def typed(argument: Argument) -> Argument:
    """An argument typed as a config may give it. Neither annotated nor typed by its default (default None): a
    number, boolean, string or null, or a list of them, never a mapping (it would not fit a run's key). Typed by
    an int default (``weight_decay=0``): an integer or a number, as such a package means a number. Typed by a
    tuple default: an array of as many items, each typed by its default's item."""
    if argument.source == "untyped":
        return Argument(argument.name, argument.default, UNTYPED, argument.source)
    if argument.source == "default":
        return Argument(argument.name, argument.default, default_schema(argument.default), argument.source)
    return argument


def default_schema(default) -> dict:
    if isinstance(default, bool):
        return {"type": "boolean"}
    if isinstance(default, int):
        return {"anyOf": [{"type": "integer"}, {"type": "number"}]}
    if isinstance(default, float):
        return {"type": "number"}
    if isinstance(default, str):
        return {"type": "string"}
    if isinstance(default, (tuple, list)):
        items = [default_schema(item) if item is not None else UNTYPED["anyOf"][0] for item in default]
        return {"type": "array", "prefixItems": items, "minItems": len(items), "maxItems": len(items)}
    return {}


def dummy_parameters() -> list[torch.Tensor]:
    """A bias, a matrix and a convolution's kernel: what the probe and the setting check build an optimizer on."""
    return [torch.zeros(3, requires_grad=True),
            torch.linspace(-1, 1, 9).reshape(3, 3).requires_grad_(),
            torch.linspace(-1, 1, 18).reshape(2, 1, 3, 3).requires_grad_()]


def probe_step(optimizer: torch.optim.Optimizer, params: list[torch.Tensor], needs_closure: bool) -> None:
    """One step on the dummy loss sum(p**2), as the training loop takes it."""
    def closure():
        optimizer.zero_grad()
        loss = sum((p ** 2).sum() for p in params)
        loss.backward()
        return loss

    if needs_closure:
        optimizer.step(closure)
    else:
        closure()
        optimizer.step()


def needs_a_closure(cls: type) -> bool:
    """Whether ``step`` must be given a closure: its ``closure`` argument has no default (LBFGS)."""
    parameter = inspect.signature(cls.step).parameters.get("closure")
    return parameter is not None and parameter.default is inspect.Parameter.empty


# the aliases of the `packaged` sections this process has read (define): alias -> its definition, as JSON
ALIASES: dict[str, str] = {}


def define(section: dict | None) -> None:
    """Make a study's `packaged` section's aliases known to this process (the config check, each job)."""
    for name, entry in (section or {}).items():
        ALIASES[name] = json.dumps(entry, sort_keys=True)


def resolve(reference: str) -> Packaged:
    """The optimizer a reference names: checked and probed once per process; ReferenceError says what is wrong.
    (A study's alias is resolved by adabench.core.optim.packaged_optimizer: its fallback may be of the registry.)"""
    return probe(read_class(reference))


@functools.cache
def read_class(reference: str) -> Packaged:
    """The class a reference names, checked, with its hyperparameters and package (not yet probed)."""
    if not REFERENCE.match(reference):
        raise ReferenceError(f"{reference!r} is not a reference to an optimizer class: write module.path:ClassName "
                             "(e.g. torch.optim:NAdam)")
    module_name, class_name = reference.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ReferenceError(f"cannot import {module_name!r} ({error}): is its package installed? "
                             f"(pip install {module_name.split('.')[0].replace('_', '-')}?)") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ReferenceError(f"module {module_name!r} has no {class_name!r}")
    if not (inspect.isclass(cls) and issubclass(cls, torch.optim.Optimizer)):
        raise ReferenceError(f"{reference} is not a torch.optim.Optimizer subclass")
    arguments = {name: typed(argument)
                 for name, argument in constructor_arguments(cls, skip=("params",), bounds={}).items()}
    required = [name for name, argument in arguments.items() if argument.default is inspect.Parameter.empty]
    if required:
        raise ReferenceError(f"{reference} requires {required} with no default (another optimizer, a model?): "
                             "a config cannot give it")
    if "lr" not in arguments:
        raise ReferenceError(f"{reference} takes no 'lr': a study's plan and the learning-rate search set it")
    if any(name.startswith("hessian") for name in arguments):
        raise ReferenceError(f"{reference} needs second-order information (backward(create_graph=True)); "
                             "adabench does not compute it")
    distribution, version = distribution_of(cls)
    has_modes = callable(getattr(cls, "train", None)) and callable(getattr(cls, "eval", None))
    return Packaged(reference, reference, cls, distribution, version, arguments, needs_a_closure(cls), has_modes)


@functools.cache
def probe(packaged: Packaged) -> Packaged:
    """One step of its defaults on a bias, a matrix and a convolution's kernel (a split: each part on its own
    tensors), and its state_dict through a checkpoint: it with ``draws_random`` known."""
    # some constructors print (Prodigy: "Using decoupled weight decay"): not into a config check's output
    with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(io.StringIO()):
        torch.manual_seed(0)
        params = dummy_parameters()
        try:
            optimizer = packaged.build(params, {})
            if packaged.has_modes:
                optimizer.train()
            before = torch.get_rng_state()
            probe_step(optimizer, params, packaged.needs_closure)
            draws_random = not torch.equal(before, torch.get_rng_state())
        except Exception as error:
            if SECOND_ORDER.search(str(error)):
                raise ReferenceError(f"{packaged.name} needs second-order information (backward(create_graph=True));"
                                     f" adabench does not compute it ({type(error).__name__}: {error})") from None
            hint = "" if packaged.fallback else (" (an optimizer of some tensors only, such as Muon of matrices, "
                                                 "needs a fallback for the others: a `packaged` entry with a "
                                                 "`fallback`)")
            raise ReferenceError(f"{packaged.name} fails a step on a bias, a matrix and a convolution's kernel with "
                                 f"its defaults ({type(error).__name__}: {error}){hint}") from None
    try:
        buffer = io.BytesIO()
        torch.save(copy.deepcopy(optimizer.state_dict()), buffer)
        buffer.seek(0)
        torch.load(buffer, weights_only=True)
    except Exception as error:
        raise ReferenceError(f"{packaged.name}'s state_dict cannot be checkpointed ({type(error).__name__}: "
                             f"{error})") from None
    return dataclasses.replace(packaged, draws_random=draws_random)


def check_setting(packaged: Packaged, hyperparameters: dict) -> None:
    """Build the optimizer with a setting on dummy parameters: a value its constructor refuses raises
    ReferenceError naming the hyperparameter at fault (the one that alone is refused), where one is."""

    def refusal(setting: dict) -> Exception | None:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                packaged.build(dummy_parameters(), setting)
        except Exception as error:  # whatever the constructor raises is its refusal
            return error
        return None

    error = refusal(hyperparameters)
    if error is None:
        return
    culprit = next((name for name in hyperparameters if refusal({name: hyperparameters[name]}) is not None), None)
    given = hyperparameters[culprit] if culprit else hyperparameters
    raise ReferenceError(f"{packaged.name} refuses {given!r} ({type(error).__name__}: {error})", culprit)


def describe(reference: str) -> str:
    """How a reference was read, for ``adabench list``: its package, each hyperparameter's type and default and
    where the type came from, and what the probe saw."""
    packaged = resolve(reference)
    origin = f"{packaged.distribution} {packaged.version}" if packaged.distribution else packaged.version
    lines = [f"optimizer {reference}  ({origin}; run keys: {key_name(reference)}; one instance per run, over "
             "the run's own shapes)"]
    sources = {"annotation": "type from its annotation", "default": "type from its default",
               "untyped": "untyped: its constructor checks it"}
    for name, argument in packaged.arguments.items():
        lines.append(f"  {name:<24} {schema_text(argument.schema):<28} = {argument.default!r:<16} "
                     f"{sources[argument.source]}")
    lines.append(f"  step: {'needs a closure' if packaged.needs_closure else 'no closure'}; train()/eval(): "
                 f"{'yes' if packaged.has_modes else 'no'}; random draws: {'yes' if packaged.draws_random else 'no'}; "
                 f"effective step sizes: "
                 f"{'reported' if hasattr(packaged.cls, 'effective_step_sizes') else 'not reported'}")
    return "\n".join(lines)


def schema_text(schema: dict) -> str:
    """A short reading of a JSON schema: number, integer|number, [number, number], scalar|list|null, ..."""
    if schema == UNTYPED:
        return "scalar|list|null"
    if "anyOf" in schema:
        return "|".join(schema_text(part) for part in schema["anyOf"])
    if "enum" in schema:
        return "|".join(map(repr, schema["enum"]))
    if schema.get("type") == "array":
        if "prefixItems" in schema:
            return "[" + ", ".join(schema_text(item) for item in schema["prefixItems"]) + "]"
        return f"[{schema_text(schema.get('items', {}))}, ...]"
    kind = schema.get("type")
    if isinstance(kind, list):
        return "|".join(kind)
    return kind or "any"


"""Text inputs of the study: the four classical NLP tasks, PG-19 prompts, the Llama 3 tokenizer.

The real source of every collection is its Hugging Face dataset (:data:`TASKS`, :data:`PG19`).
A mirror folder laid out like ``shared/data`` (``text/imdb/...``, ``tokenizers/llama3/...``) is
read first when it is set and holds the files, so that machines without hub access run the same
code; both paths load through the ``datasets`` library (``load_dataset("json" | "text",
data_files=...)`` for the mirror, ``load_dataset(hub_id, config, split=...)`` otherwise).

* :func:`sample_task` draws the 1,024 examples of a classical task (section "Classical NLP
  tasks"); :func:`token_stats` gives their Llama 3 token statistics (Table 3);
  :func:`task_lengths` gives each example's request lengths for measuring the task (Figs 8, 12).
* :func:`pg19_tokens` gives the PG-19 token stream the prompts of the controlled sweeps are cut
  from: the books concatenated, truncated to the longest input length.
* :func:`load_tokenizer` gives the Llama 3 tokenizer as a ``transformers`` fast tokenizer.

WikiText-2 rows follow the usual practice: empty lines and section headings (lines starting
with ``" ="``) are dropped, and the trailing line break of a row is removed, so that the mirror's
raw file and the hub's rows give the same texts. Counts exclude special tokens (no BOS).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from llm_energy.errors import ConfigError, InputError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class TextSource:
    """Where one text collection comes from: its Hugging Face split and its mirror copy."""

    name: str
    role: str  # the paper's name for the task (Table 3 rows)
    hub_id: str
    hub_config: str | None
    hub_split: str
    hub_field: str  # dotted path into a hub row, e.g. "translation.en"
    mirror_files: tuple[str, ...]  # relative to a mirror laid out like shared/data; globs allowed
    mirror_format: Literal["jsonl", "lines", "documents"]  # jsonl rows, text lines, whole files
    mirror_field: str = "text"  # field of a jsonl row
    extra_mirror_files: tuple[str, ...] = ()  # other splits, used only to top a sample up
    drop_headings: bool = False  # WikiText: drop empty lines and " = Heading = " lines
    # How long a request's output is when the task is measured (:func:`task_lengths`): a fixed
    # length, or the token length of the reference target (hub field, mirror jsonl field).
    output_tokens: int | None = None
    hub_target_field: str | None = None
    mirror_target_field: str | None = None


TASKS: dict[str, TextSource] = {
    "imdb": TextSource(
        name="imdb",
        role="classification",
        hub_id="stanfordnlp/imdb",
        hub_config=None,
        hub_split="test",
        hub_field="text",
        mirror_files=("text/imdb/imdb_reviews.jsonl",),
        mirror_format="jsonl",
        output_tokens=1,  # the study's classification: one output token
    ),
    "wmt14": TextSource(
        name="wmt14",
        role="translation",
        hub_id="wmt/wmt14",
        hub_config="de-en",
        hub_split="test",
        hub_field="translation.en",
        mirror_files=("text/wmt14/newstest2014_en-de.jsonl",),
        mirror_format="jsonl",
        mirror_field="en",
        hub_target_field="translation.de",  # the German reference
        mirror_target_field="de",
    ),
    "cnn_dailymail": TextSource(
        name="cnn_dailymail",
        role="summarization",
        hub_id="abisee/cnn_dailymail",
        hub_config="3.0.0",
        hub_split="test",
        hub_field="article",
        mirror_files=("text/cnn_dailymail/cnndm_test_100.jsonl",),
        mirror_format="jsonl",
        mirror_field="article",
        # Training articles, length-filtered upstream (see their PROVENANCE): extra text only.
        extra_mirror_files=("text/cnn_dailymail/cnndm_train_1000_articles.jsonl",),
        hub_target_field="highlights",  # the reference summary
        mirror_target_field="highlights",
    ),
    "wikitext": TextSource(
        name="wikitext",
        role="generation",
        hub_id="Salesforce/wikitext",
        hub_config="wikitext-2-raw-v1",
        hub_split="test",
        hub_field="text",
        mirror_files=("text/wikitext2/wiki.test.raw",),
        mirror_format="lines",
        drop_headings=True,
        output_tokens=64,  # the study's generation: 64 output tokens
    ),
}

# PG-19 itself is a script-based hub dataset; the mirror holds four Gutenberg books instead.
PG19 = TextSource(
    name="pg19",
    role="long_context",
    hub_id="deepmind/pg19",
    hub_config=None,
    hub_split="test",
    hub_field="text",
    mirror_files=("text/pg19_style/*.txt",),
    mirror_format="documents",
)

LLAMA3_HUB_ID = "meta-llama/Llama-3.1-8B"
LLAMA3_MIRROR = "tokenizers/llama3"
LLAMA3_RANKS = "tokenizer.model"
LLAMA3_META = "llama3_tokenizer_meta.json"


# --------------------------------------------------------------------------- sources and files


def _task(name: str) -> TextSource:
    if name not in TASKS:
        raise ConfigError(f"unknown task '{name}'; known: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def _resolve(mirror: str | Path | None, patterns: Sequence[str]) -> list[Path]:
    """The mirror's files for these patterns (each sorted by name); [] if any is missing."""
    if not mirror or not patterns:
        return []
    files: list[Path] = []
    for pattern in patterns:
        found = sorted(p for p in Path(mirror).glob(pattern) if p.is_file())
        if not found:
            return []
        files.extend(found)
    return files


def _check_jsonl(path: Path, field: str) -> None:
    """Every non-blank line must be a JSON object whose ``field`` is a non-empty string."""
    try:
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}: line {number}: not JSON ({exc.msg})") from exc
                if not isinstance(row, dict):
                    raise InputError(f"{path}: line {number}: expected a JSON object")
                value = row.get(field)
                if not isinstance(value, str) or not value:
                    what = "missing" if field not in row else f"not a non-empty string: {value!r}"
                    raise InputError(f"{path}: line {number}: field '{field}' {what}")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from exc


def _mirror_column(
    files: Sequence[Path], fmt: str, field: str, cache_dir: str | Path | None
) -> list[str]:
    """One column of mirror files, in file order, through ``datasets.load_dataset``."""
    try:
        import datasets
    except ImportError as exc:
        raise ConfigError("reading text data needs the 'datasets' package (extra: data)") from exc

    if fmt == "jsonl":
        for path in files:
            _check_jsonl(path, field)
        builder, kwargs = "json", {}
    else:
        builder, kwargs = "text", {"sample_by": "document" if fmt == "documents" else "line"}
    texts: list[str] = []
    for path in files:  # one file at a time keeps the order explicit
        try:
            ds = datasets.load_dataset(
                builder,
                data_files=str(path),
                split="train",
                cache_dir=None if cache_dir is None else str(cache_dir),
                **kwargs,
            )
        except Exception as exc:
            raise InputError(f"{path}: datasets could not read it ({exc})") from exc
        texts.extend(ds[field if fmt == "jsonl" else "text"])
    return texts


def _field(row: dict[str, Any], dotted: str) -> str:
    value: Any = row
    for key in dotted.split("."):
        value = value[key]
    return str(value)


def _hub_rows(
    src: TextSource,
    cache_dir: str | Path | None,
    streaming: bool = False,
    field: str | None = None,
) -> Iterator[str]:
    """The text field (or ``field``) of the real split's rows, in split order."""
    hint = f"set mirror.data to a folder holding {', '.join(src.mirror_files)}"
    where = f"'{src.hub_id}'" + (f" ({src.hub_config})" if src.hub_config else "")
    try:
        import datasets

        ds = datasets.load_dataset(
            src.hub_id,
            src.hub_config,
            split=src.hub_split,
            streaming=streaming,
            cache_dir=None if cache_dir is None else str(cache_dir),
        )
        for row in ds:
            yield _field(row, field or src.hub_field)
    except Exception as exc:
        raise InputError(
            f"{src.name}: could not load {where} split '{src.hub_split}' from the Hugging Face "
            f"hub ({type(exc).__name__}: {exc}); {hint}"
        ) from exc


def _generation_rows(texts: Sequence[str]) -> list[str]:
    """WikiText-2: no empty lines, no section headings, no trailing line break."""
    return [t.rstrip("\r\n") for t in texts if t.strip() and not t.startswith(" =")]


def load_texts(
    name: str, mirror: str | Path | None, *, cache_dir: str | Path | None = None
) -> tuple[list[str], str]:
    """All candidate texts of a task in split order, and where they came from."""
    src = _task(name)
    files = _resolve(mirror, src.mirror_files)
    if files:
        texts = _mirror_column(files, src.mirror_format, src.mirror_field, cache_dir)
        origin = ", ".join(str(f) for f in files)
    else:
        texts = list(_hub_rows(src, cache_dir))
        origin = f"hf:{src.hub_id}" + (f"/{src.hub_config}" if src.hub_config else "")
        origin += f":{src.hub_split}"
    if src.drop_headings:
        texts = _generation_rows(texts)
    if not texts:
        raise InputError(f"{name}: no texts in {origin}")
    return texts, origin


# --------------------------------------------------------------------------- sampling


def _check_count(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise ConfigError(f"n must be a positive integer, not {n!r}")


def _top_up(
    src: TextSource,
    mirror: str | Path | None,
    first_id: int,
    missing: int,
    rng: np.random.Generator,
    cache_dir: str | Path | None,
) -> tuple[list[int], list[str], str]:
    """Up to ``missing`` texts drawn from the mirror's extra files (other splits): ids (from
    ``first_id`` on), texts, and a note; nothing when the mirror has no extra files."""
    files = _resolve(mirror, src.extra_mirror_files)
    if not files or missing <= 0:
        return [], [], ""
    extra = _mirror_column(files, src.mirror_format, src.mirror_field, cache_dir)
    picks = rng.choice(len(extra), size=min(missing, len(extra)), replace=False)
    origin = ", ".join(str(f) for f in files)
    note = f"; topped up with {len(picks)} of {len(extra)} texts drawn from {origin}"
    return [first_id + int(i) for i in picks], [extra[i] for i in picks], note


def sample_task(
    name: str,
    mirror: str | Path | None,
    n: int = 1024,
    seed: int = 0,
    *,
    top_up: bool = False,
    cache_dir: str | Path | None = None,
) -> pd.DataFrame:
    """``n`` examples of a classical task, drawn without replacement; columns task, example_id,
    text.

    ``example_id`` is the position in the task's candidate list (split order, after WikiText's
    filtering). The draw is ``numpy.random.default_rng(seed).choice(pool, n, replace=False)``, in
    draw order. When the split holds fewer than ``n`` texts all of them are returned in split
    order and ``df.attrs['note']`` says so. ``top_up=True`` then fills the sample from the
    mirror's other splits where the registry has some (CNN/DailyMail: the mirror holds 100 test
    and 1,000 training articles); their ids continue after the split's.
    """
    src = _task(name)
    _check_count(n)
    pool, origin = load_texts(name, mirror, cache_dir=cache_dir)
    rng = np.random.default_rng(seed)
    attrs: dict[str, Any] = {
        "task": name,
        "role": src.role,
        "source": origin,
        "pool_size": len(pool),
        "requested": int(n),
        "seed": seed,
        "note": "",
    }
    if len(pool) >= n:
        ids = rng.choice(len(pool), size=n, replace=False)
        texts = [pool[i] for i in ids]
    else:
        ids, texts = np.arange(len(pool)), list(pool)
        attrs["note"] = (
            f"only {len(pool)} texts in {origin}, fewer than n={n}: all of them are used, "
            "in split order (not sampled)"
        )
        if top_up:
            more_ids, more_texts, note = _top_up(
                src, mirror, len(pool), n - len(pool), rng, cache_dir
            )
            ids = np.concatenate([ids, np.asarray(more_ids, dtype=np.int64)])
            texts += more_texts
            attrs["note"] += note
    df = pd.DataFrame(
        {"task": name, "example_id": np.asarray(ids, dtype=np.int64), "text": texts},
        columns=["task", "example_id", "text"],
    )
    df.attrs.update(attrs)
    return df


# --------------------------------------------------------------------------- tokens


def encode(texts: Sequence[str], tokenizer: PreTrainedTokenizerBase) -> list[list[int]]:
    """Token ids of each text, without special tokens."""
    if not texts:
        return []
    return list(tokenizer(list(texts), add_special_tokens=False)["input_ids"])


def token_stats(df: pd.DataFrame, tokenizer: PreTrainedTokenizerBase) -> pd.DataFrame:
    """Per task (index, order of appearance): role, mean, std (ddof 1), max, count (texts)."""
    missing = {"task", "text"} - set(df.columns)
    if missing:
        raise InputError(f"token_stats needs columns task and text; missing {sorted(missing)}")
    if df.empty:
        raise InputError("token_stats: no texts")
    tokens = pd.Series([len(ids) for ids in encode(df["text"].tolist(), tokenizer)], df.index)
    grouped = tokens.groupby(df["task"], sort=False)
    stats = pd.DataFrame(
        {
            "mean": grouped.mean(),
            "std": grouped.std(ddof=1),
            "max": grouped.max().astype("int64"),
            "count": grouped.size().astype("int64"),
        }
    )
    stats.insert(0, "role", [TASKS[t].role if t in TASKS else "" for t in stats.index])
    stats.index.name = "task"
    return stats


# --------------------------------------------------------------------------- request lengths

# The classical tasks by the study's name (the workflow's {task}): classification -> imdb, ...
ROLES: dict[str, str] = {src.role: name for name, src in TASKS.items()}
LENGTH_COLUMNS = [
    "task",
    "dataset",
    "example_id",
    "input_tokens",
    "output_tokens",
    "output_source",
    "tokenizer",
]


def _has_field(path: Path, field: str) -> bool:
    """Whether the first row of a jsonl file has ``field`` (then every row must have it)."""
    try:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    row = json.loads(line)
                    return isinstance(row, dict) and field in row
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from exc
    return False


def load_targets(
    name: str, mirror: str | Path | None, *, cache_dir: str | Path | None = None
) -> tuple[list[str] | None, str]:
    """The reference target of every candidate text (aligned with :func:`load_texts`), and
    where it came from; ``None`` with the reason when the task has no reference or the mirror's
    files do not hold it (this mirror's CNN/DailyMail articles come without their highlights)."""
    src = _task(name)
    if src.hub_target_field is None or src.mirror_target_field is None:
        return None, f"{name} has no reference target"
    files = _resolve(mirror, src.mirror_files)
    if files:
        where = ", ".join(str(f) for f in files)
        field = src.mirror_target_field
        if not all(_has_field(f, field) for f in files):
            return None, f"{where} holds no '{field}' field"
        return _mirror_column(files, src.mirror_format, field, cache_dir), f"{where} ({field})"
    texts = list(_hub_rows(src, cache_dir, field=src.hub_target_field))
    origin = f"hf:{src.hub_id}" + (f"/{src.hub_config}" if src.hub_config else "")
    return texts, f"{origin}:{src.hub_split} ({src.hub_target_field})"


def tokenizer_label(mirror: str | Path | None) -> str:
    """Which tokenizer :func:`load_tokenizer` gives for this mirror, in words."""
    folder = Path(mirror) / LLAMA3_MIRROR if mirror else None
    if folder and (folder / LLAMA3_RANKS).is_file() and (folder / LLAMA3_META).is_file():
        return f"{LLAMA3_HUB_ID} (tiktoken ranks of {folder})"
    return f"{LLAMA3_HUB_ID} (hub)"


def task_lengths(
    sample: pd.DataFrame,
    tokenizer: PreTrainedTokenizerBase,
    mirror: str | Path | None,
    *,
    tokenizer_name: str = "",
    fallback_output_tokens: int | None = None,
    cache_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Request lengths of a task's sampled examples (:func:`sample_task`), in sample order.

    ``input_tokens`` counts the text's tokens without special tokens (as Table 3 does);
    ``output_tokens`` is the study's fixed length (classification 1, generation 64) or the
    token length of the example's reference target (translation: the WMT-14 German reference;
    summarization: the CNN/DailyMail highlights), at least 1. Random-weight models never stop by
    themselves, so the reference stands in for where a trained model would stop. An example
    without a reference (the source lacks the field, or a top-up from another split) gets
    ``fallback_output_tokens``, and ``output_source`` says ``fallback``; without a fallback that
    is an error.
    """
    missing = {"task", "example_id", "text"} - set(sample.columns)
    if missing:
        raise InputError(
            f"task_lengths needs columns task, example_id and text; missing {sorted(missing)}"
        )
    names = sample["task"].unique().tolist()
    if len(names) != 1:
        raise InputError(f"task_lengths takes the sample of one task, not {names}")
    name = str(names[0])
    src = _task(name)
    inputs = [len(ids) for ids in encode(sample["text"].tolist(), tokenizer)]
    ids = sample["example_id"].astype("int64").tolist()
    attrs: dict[str, Any] = {"task": src.role, "dataset": name, "tokenizer": tokenizer_name}
    if src.output_tokens is not None:
        outputs, sources = [src.output_tokens] * len(ids), ["fixed"] * len(ids)
        attrs["outputs"] = f"fixed: {src.output_tokens} tokens"
    else:
        refs, origin = load_targets(name, mirror, cache_dir=cache_dir)
        have = [] if refs is None else [i for i in ids if 0 <= i < len(refs)]
        targets = encode([refs[i] for i in have], tokenizer) if refs is not None else []
        counts = {i: len(t) for i, t in zip(have, targets, strict=True)}
        lacking = len(ids) - len(have)
        if lacking and fallback_output_tokens is None:
            raise InputError(
                f"{name}: {lacking} of {len(ids)} examples have no reference target ({origin}); "
                "read the task from a source that holds it (the Hugging Face hub has it) or set "
                "experiments.classical_tasks.fallback_output_tokens"
            )
        outputs = [max(1, counts[i]) if i in counts else fallback_output_tokens for i in ids]
        sources = ["reference" if i in counts else "fallback" for i in ids]
        if refs is None:
            attrs["outputs"] = f"no reference ({origin}): {fallback_output_tokens} tokens each"
        else:
            attrs["outputs"] = f"reference token lengths from {origin}" + (
                f"; {lacking} without a reference get {fallback_output_tokens} tokens"
                if lacking
                else ""
            )
    df = pd.DataFrame(
        {
            "task": src.role,
            "dataset": name,
            "example_id": np.asarray(ids, dtype=np.int64),
            "input_tokens": np.asarray(inputs, dtype=np.int64),
            "output_tokens": np.asarray(outputs, dtype=np.int64),
            "output_source": sources,
            "tokenizer": tokenizer_name,
        },
        columns=LENGTH_COLUMNS,
    )
    df.attrs.update(attrs)
    return df


# --------------------------------------------------------------------------- PG-19 prompts


def _check_lengths(lengths: Sequence[int]) -> list[int]:
    wanted = list(lengths)
    bad = [x for x in wanted if isinstance(x, bool) or not isinstance(x, (int, np.integer))]
    if not wanted or bad or min(wanted) <= 0:
        raise ConfigError(f"lengths must be a non-empty list of positive integers: {lengths}")
    return [int(x) for x in wanted]


def _pg19_books(mirror: str | Path | None, cache_dir: str | Path | None) -> Iterator[str]:
    """Book texts: the mirror's files sorted by name, else the hub split in its order."""
    files = _resolve(mirror, PG19.mirror_files)
    if not files:
        yield from _hub_rows(PG19, cache_dir, streaming=True)
        return
    for path in files:
        yield from _mirror_column([path], PG19.mirror_format, "text", cache_dir)


def pg19_tokens(
    mirror: str | Path | None,
    tokenizer: PreTrainedTokenizerBase,
    max_tokens: int,
    *,
    min_tokens: int = 1,
    cache_dir: str | Path | None = None,
) -> list[int]:
    """The first ``max_tokens`` ids of the concatenated books, or all of them when the books
    hold fewer; fewer than ``min_tokens`` is an error.

    Books are tokenised one by one (no special tokens, nothing between books) and their ids
    concatenated. The mirror's books are taken in file-name order; the hub's test split in its
    order (streamed, so only the books needed are read).
    """
    (need,) = _check_lengths([max_tokens])
    ids: list[int] = []
    books = 0
    for book in _pg19_books(mirror, cache_dir):
        ids.extend(encode([book], tokenizer)[0])
        books += 1
        if len(ids) >= need:
            break
    if len(ids) < min_tokens:
        where = ", ".join(str(f) for f in _resolve(mirror, PG19.mirror_files)) or PG19.hub_id
        raise InputError(
            f"pg19: the books hold {len(ids)} tokens ({books} book(s) in {where}), "
            f"fewer than the longest requested length {min_tokens}"
        )
    return ids[:need]


# --------------------------------------------------------------------------- tokenizer


def _read_ranks(path: Path) -> dict[bytes, int]:
    """tiktoken's BPE file: one ``base64(token) rank`` pair a line."""
    ranks: dict[bytes, int] = {}
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc})") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except (ValueError, binascii.Error) as exc:
            raise InputError(f"{path}: line {number}: expected 'base64 rank'") from exc
    return ranks


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read the tokenizer metadata ({exc})") from exc
    keys = ("pat_str", "num_base_tokens", "special_tokens", "bos_id", "eos_id")
    missing = [k for k in keys if k not in meta]
    if missing:
        raise InputError(f"{path}: missing key(s) {', '.join(missing)}")
    return meta


def _llama3_from_mirror(folder: Path) -> PreTrainedTokenizerBase:
    """The Llama 3 tokenizer built offline from tiktoken ranks and the special-token table,
    by transformers' own conversion of a tiktoken file (``TikTokenConverter``)."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    meta = _read_meta(folder / LLAMA3_META)
    ranks = _read_ranks(folder / LLAMA3_RANKS)
    if len(ranks) != meta["num_base_tokens"] or set(ranks.values()) != set(range(len(ranks))):
        expected = meta["num_base_tokens"]
        raise InputError(f"{folder / LLAMA3_RANKS}: {len(ranks)} ranks, expected 0..{expected - 1}")
    special = sorted(meta["special_tokens"].items(), key=lambda kv: kv[1])
    if [i for _, i in special] != list(range(len(ranks), len(ranks) + len(special))):
        raise InputError(f"{folder / LLAMA3_META}: special token ids must follow the BPE ranks")

    class MirrorRanks(TikTokenConverter):
        # The ranks read above: tiktoken's own reader would copy the file into a cache folder.
        def load_tiktoken_bpe(self, _path: str) -> dict[bytes, int]:
            return ranks

    converter = MirrorRanks(
        vocab_file=str(folder / LLAMA3_RANKS),
        pattern=meta["pat_str"],
        extra_special_tokens=[t for t, _ in special],  # in id order: they follow the ranks
    )
    tok = converter.converted()
    names = {i: t for t, i in special}
    bos, eos = names[meta["bos_id"]], names[meta["eos_id"]]
    tok.post_processor = processors.Sequence(  # as the hub's tokenizer.json: BOS first
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{bos} $A",
                pair=f"{bos} $A {bos} $B",
                special_tokens=[(bos, meta["bos_id"])],
            ),
        ]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos)


def load_tokenizer(mirror: str | Path | None) -> PreTrainedTokenizerBase:
    """The Llama 3 tokenizer as a ``transformers`` fast tokenizer.

    From the mirror's ``tokenizers/llama3`` (tiktoken ``tokenizer.model`` with 128,000 ranks and
    the meta JSON's pattern and 256 special tokens), converted offline into a
    ``PreTrainedTokenizerFast`` that gives tiktoken's ids and, like the hub's, prepends
    ``<|begin_of_text|>`` when special tokens are added. Without a mirror:
    ``AutoTokenizer.from_pretrained("meta-llama/Llama-3.1-8B")`` (a gated hub repository).
    """
    folder = Path(mirror) / LLAMA3_MIRROR if mirror else None
    if folder and (folder / LLAMA3_RANKS).is_file() and (folder / LLAMA3_META).is_file():
        return _llama3_from_mirror(folder)
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(LLAMA3_HUB_ID)
    except Exception as exc:
        raise InputError(
            f"could not load the tokenizer of {LLAMA3_HUB_ID} from the Hugging Face hub "
            f"({type(exc).__name__}: {exc}); set mirror.data to a folder holding "
            f"{LLAMA3_MIRROR}/{LLAMA3_RANKS} and {LLAMA3_MIRROR}/{LLAMA3_META}"
        ) from exc

"""Text inputs: classical-task samples, Table 3 statistics, PG-19 prompts, Llama 3 tokenizer."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from conftest import MIRROR, require_mirror

datasets = pytest.importorskip("datasets")
transformers = pytest.importorskip("transformers")
tiktoken = pytest.importorskip("tiktoken")

from llm_energy.analysis.paper import PAPER_TABLE3  # noqa: E402
from llm_energy.errors import ConfigError, InputError  # noqa: E402
from llm_energy.inputs import texts as textdata  # noqa: E402
from llm_energy.inputs.texts import (  # noqa: E402
    PG19,
    TASKS,
    encode,
    load_texts,
    load_tokenizer,
    pg19_tokens,
    sample_task,
    token_stats,
)

needs_mirror = pytest.mark.mirror("text", "tokenizers/llama3")
SAMPLED = ["imdb", "wmt14", "wikitext"]  # splits with more than 1,024 texts in the mirror
POOL_SIZES = {"imdb": 1196, "wmt14": 3003, "cnn_dailymail": 100, "wikitext": 2183}
SENTENCE = "The quick brown fox jumps over the lazy dog."
SENTENCE_IDS = [791, 4062, 14198, 39935, 35308, 927, 279, 16053, 5679, 13]  # tokenizers PROVENANCE


@pytest.fixture(scope="module")
def hf_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hf-datasets")


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(require_mirror("tokenizers/llama3"))


@pytest.fixture(scope="module")
def samples(hf_cache: Path) -> dict[str, pd.DataFrame]:
    require_mirror("text")
    return {name: sample_task(name, MIRROR, cache_dir=hf_cache) for name in TASKS}


@pytest.fixture(scope="module")
def stats(samples: dict[str, pd.DataFrame], tokenizer) -> pd.DataFrame:
    return token_stats(pd.concat(samples.values(), ignore_index=True), tokenizer)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


# --------------------------------------------------------------------------- registry


def test_registry_names_the_real_hub_splits_and_mirror_files() -> None:
    hub = {n: (s.hub_id, s.hub_config, s.hub_split, s.hub_field) for n, s in TASKS.items()}
    assert hub == {
        "imdb": ("stanfordnlp/imdb", None, "test", "text"),
        "wmt14": ("wmt/wmt14", "de-en", "test", "translation.en"),
        "cnn_dailymail": ("abisee/cnn_dailymail", "3.0.0", "test", "article"),
        "wikitext": ("Salesforce/wikitext", "wikitext-2-raw-v1", "test", "text"),
    }
    assert (PG19.hub_id, PG19.hub_config, PG19.hub_split, PG19.hub_field) == (
        "deepmind/pg19",
        None,
        "test",
        "text",
    )
    roles = {n: s.role for n, s in TASKS.items()}
    assert roles == {
        "imdb": "classification",
        "wmt14": "translation",
        "cnn_dailymail": "summarization",
        "wikitext": "generation",
    }
    assert set(PAPER_TABLE3) == set(TASKS)


@needs_mirror
def test_mirror_holds_every_registered_file() -> None:
    for src in [*TASKS.values(), PG19]:
        for pattern in (*src.mirror_files, *src.extra_mirror_files):
            assert list(MIRROR.glob(pattern)), f"{src.name}: {pattern} not in {MIRROR}"


# --------------------------------------------------------------------------- sampling


@needs_mirror
@pytest.mark.parametrize("name", list(TASKS))
def test_each_task_samples_1024_or_all(name: str, samples: dict[str, pd.DataFrame]) -> None:
    df = samples[name]
    pool = POOL_SIZES[name]
    assert list(df.columns) == ["task", "example_id", "text"]
    assert (df["task"] == name).all()
    assert df.attrs["pool_size"] == pool
    assert len(df) == min(1024, pool)
    assert df["example_id"].is_unique
    assert df["example_id"].between(0, pool - 1).all()
    assert df["text"].map(lambda t: isinstance(t, str) and t.strip() != "").all()
    if pool >= 1024:
        assert df.attrs["note"] == ""
    else:  # CNN/DailyMail: the mirror's test split has 100 articles; all are used, in order
        assert df["example_id"].tolist() == list(range(pool))
        assert "only 100 texts" in df.attrs["note"] and "n=1024" in df.attrs["note"]


@needs_mirror
@pytest.mark.parametrize(
    ("name", "file", "field"),
    [
        ("imdb", "text/imdb/imdb_reviews.jsonl", "text"),
        ("wmt14", "text/wmt14/newstest2014_en-de.jsonl", "en"),
        ("cnn_dailymail", "text/cnn_dailymail/cnndm_test_100.jsonl", "article"),
    ],
)
def test_example_ids_point_at_the_mirror_rows(
    name: str, file: str, field: str, samples: dict[str, pd.DataFrame]
) -> None:
    rows = _jsonl(MIRROR / file)
    df = samples[name]
    assert df["text"].tolist() == [rows[i][field] for i in df["example_id"]]


@needs_mirror
def test_wikitext_drops_empty_lines_and_headings(samples: dict[str, pd.DataFrame]) -> None:
    raw = (MIRROR / "text/wikitext2/wiki.test.raw").read_text(encoding="utf-8").splitlines()
    body = [line for line in raw if line.strip() and not line.startswith(" =")]
    assert len(raw) == 2891 and len(body) == POOL_SIZES["wikitext"]
    df = samples["wikitext"]
    assert df["text"].tolist() == [body[i] for i in df["example_id"]]
    assert not df["text"].str.startswith(" =").any()
    assert not df["text"].str.contains("[\r\n]").any()


@needs_mirror
def test_cnn_dailymail_uses_the_test_file_and_tops_up_from_train_on_request(
    hf_cache: Path, samples: dict[str, pd.DataFrame]
) -> None:
    test = [r["article"] for r in _jsonl(MIRROR / "text/cnn_dailymail/cnndm_test_100.jsonl")]
    train_file = MIRROR / "text/cnn_dailymail/cnndm_train_1000_articles.jsonl"
    train = [r["article"] for r in _jsonl(train_file)]
    assert samples["cnn_dailymail"]["text"].tolist() == test  # default: test split only

    df = sample_task("cnn_dailymail", MIRROR, top_up=True, cache_dir=hf_cache)
    assert len(df) == 1024 and df["example_id"].is_unique
    assert df["example_id"].iloc[:100].tolist() == list(range(100))
    assert df["text"].iloc[:100].tolist() == test
    extra = df.iloc[100:]
    assert extra["example_id"].between(100, 1099).all()
    assert extra["text"].tolist() == [train[i - 100] for i in extra["example_id"]]
    assert "topped up with 924 of 1000" in df.attrs["note"]
    again = sample_task("cnn_dailymail", MIRROR, top_up=True, cache_dir=hf_cache)
    pd.testing.assert_frame_equal(df, again)
    # a split that already holds n texts is never topped up
    small = sample_task("cnn_dailymail", MIRROR, n=10, seed=3, top_up=True, cache_dir=hf_cache)
    assert len(small) == 10 and small["example_id"].lt(100).all()


@needs_mirror
@pytest.mark.parametrize("name", SAMPLED)
def test_sampling_is_deterministic_per_seed(
    name: str, hf_cache: Path, samples: dict[str, pd.DataFrame]
) -> None:
    again = sample_task(name, MIRROR, seed=0, cache_dir=hf_cache)
    pd.testing.assert_frame_equal(samples[name], again)
    other = sample_task(name, MIRROR, seed=1, cache_dir=hf_cache)
    assert len(other) == 1024
    ids0, ids1 = samples[name]["example_id"], other["example_id"]
    assert ids0.tolist() != ids1.tolist()
    assert set(ids0) != set(ids1)


def test_sample_task_rejects_unknown_tasks_and_bad_counts() -> None:
    with pytest.raises(ConfigError, match="unknown task 'pg19'"):
        sample_task("pg19", MIRROR)
    for n in (0, -5, 2.5, True):
        with pytest.raises(ConfigError, match="positive integer"):
            sample_task("imdb", MIRROR, n=n)


# --------------------------------------------------------------------------- Table 3


@needs_mirror
def test_table3_statistics_are_positive_and_of_the_papers_magnitude(stats: pd.DataFrame) -> None:
    assert list(stats.columns) == ["role", "mean", "std", "max", "count"]
    assert list(stats.index) == list(TASKS)
    assert (stats[["mean", "std", "max"]] > 0).all().all()
    assert (stats["max"] >= stats["mean"]).all()
    assert stats["count"].to_dict() == {n: min(1024, p) for n, p in POOL_SIZES.items()}
    by_role = stats.set_index("role")["mean"]
    assert (
        by_role["translation"]
        < by_role["generation"]
        < by_role["classification"]
        < by_role["summarization"]
    )
    for name, (mean, std, top) in PAPER_TABLE3.items():
        row = stats.loc[name]
        # WMT-14 sources are about half the paper's length (its 49.96 likely counts a template)
        assert mean / 2.5 < row["mean"] < mean * 2.5, name
        assert std / 4 < row["std"] < std * 4, name
        assert top / 8 < row["max"] < top * 2, name


@needs_mirror
def test_table3_matches_the_mirror_provenance(stats: pd.DataFrame) -> None:
    # all 100 test articles: PROVENANCE gives 875.24 ± 423.75 (population std), max 2148
    cnn = stats.loc["cnn_dailymail"]
    assert cnn["mean"] == pytest.approx(875.24, abs=0.005)
    assert cnn["std"] * (99 / 100) ** 0.5 == pytest.approx(423.75, abs=0.005)
    assert cnn["max"] == 2148
    # samples of the others lie near the PROVENANCE figures for the whole files
    assert stats.loc["imdb", "mean"] == pytest.approx(294.99, rel=0.1)
    assert stats.loc["wmt14", "mean"] == pytest.approx(24.70, rel=0.1)
    assert stats.loc["wikitext", "mean"] == pytest.approx(129.25, rel=0.1)
    assert stats.loc["wikitext", "max"] <= 554 and stats.loc["wmt14", "max"] <= 103


@needs_mirror
def test_token_stats_counts_tokens_without_specials(tokenizer) -> None:
    df = pd.DataFrame(
        {"task": ["b", "a", "b"], "text": [SENTENCE, "Hello", SENTENCE + " " + SENTENCE]}
    )
    stats = token_stats(df, tokenizer)
    assert list(stats.index) == ["b", "a"]  # order of appearance
    assert stats.loc["b", "mean"] == pytest.approx(15.0)  # 10 and 20 tokens, no BOS
    assert stats.loc["b", "std"] == pytest.approx(pd.Series([10, 20]).std(ddof=1))
    assert stats.loc["b", "max"] == 20 and stats.loc["b", "count"] == 2
    assert stats.loc["a", "count"] == 1 and pd.isna(stats.loc["a", "std"])
    assert stats.loc["a", "role"] == ""
    with pytest.raises(InputError, match="missing"):
        token_stats(df.drop(columns="text"), tokenizer)
    with pytest.raises(InputError, match="no texts"):
        token_stats(df.iloc[:0], tokenizer)


# --------------------------------------------------------------------------- tokenizer


@needs_mirror
def test_tokenizer_round_trips_and_matches_the_reference_ids(tokenizer) -> None:
    assert encode([SENTENCE], tokenizer) == [SENTENCE_IDS]
    assert tokenizer(SENTENCE)["input_ids"] == [128000, *SENTENCE_IDS]  # BOS, as on the hub
    assert len(tokenizer) == 128_256
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id) == (128000, 128001)
    assert tokenizer.convert_tokens_to_ids("<|eot_id|>") == 128009
    for text in (SENTENCE, "Naïve café — 東京 😀\n\n\tline 2: 1234567 tokens' worth, isn't it?"):
        ids = encode([text], tokenizer)[0]
        assert tokenizer.decode(ids) == text


# Ids of the hand-built byte-level BPE this tokenizer replaced (transformers' conversion of
# the tiktoken file now builds it): the same ids, special tokens included.
RECORDED_IDS = {
    "Energy per token falls as the batch grows, until memory bandwidth stops helping.": [
        33775, 824, 4037, 17503, 439, 279, 7309, 28815, 11, 3156, 5044, 34494, 18417, 10695, 13,
    ],
    "Naïve café — 東京 😀\n\n\tline 2: 1234567 tokens' worth, isn't it?": [
        16589, 38672, 588, 53050, 2001, 119109, 91416, 271, 28208, 220, 17, 25, 220, 4513,
        10961, 22, 11460, 6, 5922, 11, 4536, 956, 433, 30,
    ],
    "  spaces\r\n\r\n and 100000 digits ... ’quotes’ «guillemets» 🤖🤖 done ": [
        220, 12908, 881, 323, 220, 1041, 931, 19016, 2564, 18217, 54382, 529, 12769, 8890, 321,
        3516, 1441, 13289, 11410, 97, 244, 9468, 97, 244, 2884, 220,
    ],
}  # fmt: skip


@needs_mirror
def test_tokenizer_gives_the_recorded_ids_and_special_tokens(tokenizer) -> None:
    for text, ids in RECORDED_IDS.items():
        assert tokenizer(text, add_special_tokens=False)["input_ids"] == ids, text
    specials = tokenizer("<|begin_of_text|>hi<|eot_id|><|end_of_text|>", add_special_tokens=False)
    assert specials["input_ids"] == [128000, 6151, 128009, 128001]
    assert tokenizer("hi")["input_ids"] == [128000, 6151]
    names = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|python_tag|>"]
    assert tokenizer.convert_tokens_to_ids(names) == [128006, 128007, 128009, 128010]
    assert tokenizer.all_special_ids == [128000, 128001]


@needs_mirror
def test_tokenizer_equals_tiktoken_on_the_samples(
    tokenizer, samples: dict[str, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tiktoken.load import load_tiktoken_bpe

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # no copy of the ranks in the temp folder
    folder = MIRROR / "tokenizers" / "llama3"
    meta = json.loads((folder / "llama3_tokenizer_meta.json").read_text(encoding="utf-8"))
    reference = tiktoken.Encoding(
        "llama3",
        pat_str=meta["pat_str"],
        mergeable_ranks=load_tiktoken_bpe(str(folder / "tokenizer.model")),
        special_tokens=meta["special_tokens"],
    )
    texts = pd.concat(samples.values())["text"].tolist()
    texts.append("  spaces\r\n\r\n and 100000 digits ... ’quotes’ «guillemets» 🤖🤖 done ")
    assert encode(texts, tokenizer) == reference.encode_ordinary_batch(texts)


def test_tokenizer_without_mirror_comes_from_the_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def fake(hub_id: str, *args, **kwargs):
        calls.append(hub_id)
        return "hub tokenizer"

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fake)
    assert load_tokenizer(None) == "hub tokenizer"
    assert load_tokenizer(tmp_path) == "hub tokenizer"  # a mirror without tokenizers/llama3
    assert calls == ["meta-llama/Llama-3.1-8B"] * 2

    def offline(hub_id: str, *args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", offline)
    with pytest.raises(InputError, match=r"no network.*set mirror\.data"):
        load_tokenizer(None)


def test_malformed_tokenizer_files_raise_input_error(tmp_path: Path) -> None:
    folder = tmp_path / "tokenizers" / "llama3"
    folder.mkdir(parents=True)
    (folder / "llama3_tokenizer_meta.json").write_text("{not json", encoding="utf-8")
    (folder / "tokenizer.model").write_text("IQ== 0\nIg==\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"llama3_tokenizer_meta\.json"):
        load_tokenizer(tmp_path)
    meta = {"pat_str": ".", "num_base_tokens": 2, "special_tokens": {}, "bos_id": 2, "eos_id": 3}
    (folder / "llama3_tokenizer_meta.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(InputError, match=r"tokenizer\.model: line 2"):
        load_tokenizer(tmp_path)


# --------------------------------------------------------------------------- PG-19 prompts


@needs_mirror
def test_pg19_tokens_start_with_the_first_book_in_file_name_order(
    tokenizer, hf_cache: Path
) -> None:
    first = sorted((MIRROR / "text" / "pg19_style").glob("*.txt"))[0]
    book = first.read_text(encoding="utf-8")
    book_ids = encode([book], tokenizer)[0]
    assert len(book_ids) >= 32768, first.name
    ids = pg19_tokens(MIRROR, tokenizer, 32768, min_tokens=32768, cache_dir=hf_cache)
    assert ids == book_ids[:32768]  # the first book in file-name order, truncated
    assert book.startswith(tokenizer.decode(ids[:1024]))


@needs_mirror
def test_pg19_tokens_raise_when_the_books_are_too_short(tokenizer, hf_cache: Path) -> None:
    with pytest.raises(InputError, match=r"pg19: the books hold \d+ tokens \(4 book"):
        pg19_tokens(MIRROR, tokenizer, 10_000_000, min_tokens=10_000_000, cache_dir=hf_cache)


@needs_mirror
def test_pg19_tokens_concatenate_books_by_file_name(
    tmp_path: Path, tokenizer, hf_cache: Path
) -> None:
    folder = tmp_path / "text" / "pg19_style"
    folder.mkdir(parents=True)
    (folder / "b.txt").write_text("Second book, in full.", encoding="utf-8")
    (folder / "a.txt").write_text("First book", encoding="utf-8")
    a, b = encode(["First book", "Second book, in full."], tokenizer)
    total = len(a) + len(b)
    assert pg19_tokens(tmp_path, tokenizer, len(a) + 1, cache_dir=hf_cache) == a + b[:1]
    assert pg19_tokens(tmp_path, tokenizer, total + 5, cache_dir=hf_cache) == a + b  # all
    with pytest.raises(InputError, match=rf"hold {total} tokens \(2 book"):
        pg19_tokens(tmp_path, tokenizer, total + 1, min_tokens=total + 1, cache_dir=hf_cache)
    for bad in (0, -3, 1.5):
        with pytest.raises(ConfigError, match="positive integers"):
            pg19_tokens(tmp_path, tokenizer, bad, cache_dir=hf_cache)


# --------------------------------------------------------------------------- malformed input


def _imdb_mirror(root: Path, lines: list[str]) -> Path:
    path = root / "text" / "imdb" / "imdb_reviews.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"text": "truncated', "not JSON"),
        ("plain words", "not JSON"),
        ('{"id": 3, "label": 1}', "field 'text' missing"),
        ('{"text": null}', "field 'text' not a non-empty string"),
        ('["text", "a list"]', "expected a JSON object"),
    ],
)
def test_malformed_jsonl_names_file_and_line(
    tmp_path: Path, hf_cache: Path, bad_line: str, message: str
) -> None:
    good = json.dumps({"id": 0, "text": "A fine film.", "label": 1})
    path = _imdb_mirror(tmp_path, [good, "", good, bad_line, good])
    with pytest.raises(InputError, match=re.escape(f"{path}: line 4: {message}")):
        sample_task("imdb", tmp_path, n=2, cache_dir=hf_cache)


def test_jsonl_field_follows_the_registry(tmp_path: Path, hf_cache: Path) -> None:
    path = tmp_path / "text" / "wmt14" / "newstest2014_en-de.jsonl"
    path.parent.mkdir(parents=True)
    rows = [{"id": 1, "en": "Hello there.", "de": "Hallo."}, {"id": 2, "de": "Nur Deutsch."}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=re.escape(f"{path}: line 2: field 'en' missing")):
        load_texts("wmt14", tmp_path, cache_dir=hf_cache)
    path.write_text(json.dumps(rows[0]) + "\n", encoding="utf-8")
    assert load_texts("wmt14", tmp_path, cache_dir=hf_cache) == (["Hello there."], str(path))


def test_small_mirror_split_is_used_whole_with_a_note(tmp_path: Path, hf_cache: Path) -> None:
    lines = [json.dumps({"text": f"review {i}"}) for i in range(5)]
    path = _imdb_mirror(tmp_path, lines)
    df = sample_task("imdb", tmp_path, n=1024, cache_dir=hf_cache)
    assert df["text"].tolist() == [f"review {i}" for i in range(5)]
    assert df.attrs["note"].startswith(f"only 5 texts in {path}, fewer than n=1024")
    picked = sample_task("imdb", tmp_path, n=3, seed=7, cache_dir=hf_cache)
    assert len(picked) == 3 and picked["example_id"].is_unique and picked.attrs["note"] == ""


# --------------------------------------------------------------------------- hub path


class _FakeHub:
    """Stands in for ``datasets.load_dataset`` on the hub: records calls, serves fixed rows."""

    def __init__(self, rows: list[dict]) -> None:
        self.rows, self.calls, self.served = rows, [], 0

    def __call__(self, path: str, name: str | None = None, **kwargs):
        self.calls.append((path, name, kwargs.get("split"), kwargs.get("streaming")))
        return self._iter()

    def _iter(self):
        for row in self.rows:
            self.served += 1
            yield row


def test_hub_path_reads_the_real_split_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    wmt = _FakeHub([{"translation": {"de": f"Satz {i}", "en": f"Sentence {i}"}} for i in range(4)])
    monkeypatch.setattr(datasets, "load_dataset", wmt)
    df = sample_task("wmt14", None, n=2, seed=0)
    assert wmt.calls == [("wmt/wmt14", "de-en", "test", False)]
    assert set(df["text"]) <= {f"Sentence {i}" for i in range(4)}
    assert df.attrs["source"] == "hf:wmt/wmt14/de-en:test"

    rows = [" = Title = \n", "", " First paragraph . \n", " = = Part = = \n", " Second . \n"]
    wiki = _FakeHub([{"text": t} for t in rows])
    monkeypatch.setattr(datasets, "load_dataset", wiki)
    texts, _ = load_texts("wikitext", None)
    assert texts == [" First paragraph . ", " Second . "]
    assert wiki.calls == [("Salesforce/wikitext", "wikitext-2-raw-v1", "test", False)]


def test_hub_failure_says_to_set_the_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args, **kwargs):
        raise ConnectionError("hub unreachable")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(InputError) as err:
        sample_task("cnn_dailymail", None)
    message = str(err.value)
    assert "'abisee/cnn_dailymail' (3.0.0) split 'test'" in message
    assert "hub unreachable" in message
    assert "set mirror.data to a folder holding text/cnn_dailymail/cnndm_test_100.jsonl" in message


def test_pg19_from_the_hub_streams_only_the_books_it_needs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class CharTokenizer:  # one token per character, enough to follow the cut
        def __call__(self, texts, add_special_tokens=True):
            return {"input_ids": [[ord(c) for c in t] for t in texts]}

    hub = _FakeHub([{"text": "abcd"}, {"text": "efgh"}, {"text": "ijkl"}])
    monkeypatch.setattr(datasets, "load_dataset", hub)
    assert pg19_tokens(None, CharTokenizer(), 6) == [ord(c) for c in "abcdef"]
    assert hub.calls == [("deepmind/pg19", None, "test", True)]
    assert hub.served == 2
    with pytest.raises(InputError, match=r"12 tokens \(3 book\(s\) in deepmind/pg19\)"):
        pg19_tokens(None, CharTokenizer(), 13, min_tokens=13)


def test_module_imports_no_heavy_library_at_import_time() -> None:
    source = Path(textdata.__file__).read_text(encoding="utf-8")
    top_level = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert not [line for line in top_level if re.search(r"datasets|transformers|tokenizers", line)]

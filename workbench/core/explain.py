"""Why a message got its label: a score per token and class, measured by leaving the token out.

The score of a piece of the text for class c is how much class c's log-odds drop when that piece
is deleted and the rest is classified again (occlusion, Zeiler & Fergus 2014; "leave one out" in
Li, Monroe & Jurafsky 2016, "Understanding Neural Networks through Representation Erasure"):

    score[c][i] = logit p_c(text) - logit p_c(text without piece i)      logit p = log(p / (1 - p))

Positive: the piece pushed towards c. Log-odds rather than probabilities because a confident
prediction (p = 0.999) barely moves in probability when one word goes, so probability differences
would all be near zero and rank nothing; for two classes one class's scores are the other's
negated. A piece is the shortest run of GPT-2 tokens that decodes to whole characters ("£" is
two tokens); a text of more than MAX_PIECES pieces is scored in MAX_PIECES contiguous spans.

Why occlusion, measured with benchmarks/explain_methods.py. Cost: GPT-2 small's layout (random
weights, LoRA merged), CPU time of one thread on a shared 2-core x86 machine, the best of 3 runs;
in brackets, multiples of one forward pass of the message:

    message     forward   grad x input   IG 4 steps    IG 8 steps    occlusion     occlusion,
                                                                     (whole texts)  shared prefix
    10 tokens    58 ms    245 (4.2x)     364 (6.2x)    648 (11.1x)    268 (4.6x)    185 (3.2x)
    25 tokens   110 ms    264 (2.4x)     684 (6.2x)   1163 (10.5x)   1101 (10.0x)   820 (7.4x)
    50 tokens   139 ms    438 (3.2x)    1190 (8.6x)   2311 (16.6x)   4972 (35.8x)  3026 (21.8x)

Faithfulness: a 2-layer, 64-wide GPT-2 with the real BPE trained on the SMS Spam Collection
(like tests/conftest.py's ``sms_tiny_adapter``, 8 epochs); over the test split (242 messages of
more than 5 tokens, each token whole characters), the mean drop of the predicted class's
probability when the k pieces a method ranks highest are deleted, against k random pieces:

    k                         1      2      3      4      5
    occlusion               0.164  0.164  0.154  0.178  0.197
    integrated gradients 8  0.105  0.139  0.143  0.163  0.209
    gradient x input        0.097  0.128  0.124  0.131  0.168
    random                  0.068  0.089  0.074  0.089  0.121

Gradient x input is the cheapest, but its top pieces barely beat random ones (+0.03 at k = 1,
occlusion +0.10), and it needs gradients through the model, which the classifier's packed CPU
weights (classify.pack_weights_for_cpu) cannot give: it would need a second, unpacked copy of
the model. Integrated gradients costs as much as occlusion and is less faithful for the top
pieces. Occlusion is the most faithful where reading the colours needs it (the strongest one or
two pieces; at k = 1 it reports exactly what the test measures), and it runs on the classifier
as it is (packed, bf16, CUDA) under ``inference_mode``. Its cost is cut by sharing work: every
shortened text keeps the prefix before its deleted piece, so that prefix's keys and values come
from one forward pass of the whole text and only the suffixes run, all in one batch of masked
sequences (n(n-1)/2 tokens instead of n(n-1); 1.35-1.65x faster as measured above). A typical
SMS (17 tokens) costs about five forward passes: a fraction of a second on two threads, so the
window explains on its worker once typing pauses rather than on every keystroke.
"""

from __future__ import annotations

import codecs
import threading
from dataclasses import asdict, dataclass

import torch

from .device import autocast
from .errors import Cancelled
from .tokenizer import EOT_ID

MAX_PIECES = 48  # longer texts are scored in this many spans: the work grows with pieces x tokens
GROUP_TOKENS = 512  # shortened texts' tokens run per batched pass (bounds the attention mask)


@dataclass(frozen=True)
class Explanation:
    """A score per piece of the text and per class (see the module docstring for the formula)."""

    tokens: tuple[str, ...]  # the pieces of the text the model read, in order; joined, that text
    scores: tuple[tuple[float, ...], ...]  # scores[c][i]: class c's log-odds drop without piece i
    label_names: tuple[str, ...]
    predicted: str  # the label the classifier gives the whole text
    probabilities: dict[str, float]  # every class, in label order
    truncated: bool  # the text was longer than the adapter's max length; the rest was not read

    def scores_for(self, label: str) -> tuple[float, ...]:
        return self.scores[self.label_names.index(label)]

    def top(self, label: str, k: int) -> list[int]:
        """Indices of the k pieces that pushed most towards ``label``, strongest first."""
        scores = self.scores_for(label)
        return sorted(range(len(scores)), key=lambda i: -scores[i])[:k]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scores"] = dict(zip(self.label_names, d["scores"]))
        return d


def explain(classifier, text: str, stop: threading.Event | None = None) -> Explanation:
    """Token attributions for ``text`` by occlusion with the classifier (a classify.Classifier)."""
    ids = classifier.encode(text)
    truncated = len(classifier.tokenizer.encode_ordinary(text)) > len(ids)
    return explain_ids(classifier, ids, truncated=truncated, stop=stop)


def explain_ids(classifier, ids: list[int], *, truncated: bool = False, stop=None) -> Explanation:
    """``explain`` for a text already tokenized (deleting pieces of ``ids`` exactly, with no
    re-tokenizing of the shortened text)."""
    spans = merge_spans(character_pieces(classifier.tokenizer, ids), MAX_PIECES)
    model = classifier.model
    with torch.inference_mode(), autocast(classifier.device, classifier.precision):
        full, cache = model.forward_cached(torch.tensor([ids], device=classifier.device), None)
        without = _logits_without(model, ids, spans, cache, stop)  # (R, C)
    temperature = classifier.temperature or 1.0  # the scores explain the probabilities shown
    scores = log_odds(full.float().cpu() / temperature) - log_odds(without.float().cpu() / temperature)  # (R, C)
    prediction = classifier.prediction_from_logits(full[0])
    return Explanation(
        tokens=tuple(_decode(classifier.tokenizer, ids[start:end]) for start, end in spans),
        scores=tuple(tuple(column) for column in scores.T.tolist()),
        label_names=tuple(classifier.info.label_names),
        predicted=prediction.label,
        probabilities=prediction.probabilities,
        truncated=truncated,
    )


def log_odds(logits: torch.Tensor) -> torch.Tensor:
    """log(p_c / (1 - p_c)) for every class c, from logits (N, C), without computing 1 - p (which
    rounds to 0 for a confident prediction): logit_c - logsumexp of the other classes' logits."""
    columns = []
    for c in range(logits.shape[-1]):
        others = torch.cat([logits[..., :c], logits[..., c + 1 :]], dim=-1)
        columns.append(logits[..., c] - torch.logsumexp(others, dim=-1))
    return torch.stack(columns, dim=-1)


def character_pieces(tokenizer, ids: list[int]) -> list[tuple[int, int]]:
    """Token ranges [start, end) that each decode to whole UTF-8 characters.

    Byte-level BPE splits some characters ("£", emoji) over tokens that alone decode to nothing
    readable; deleting or colouring half a character means nothing to a reader. A piece ends where
    the decoder holds no unfinished character (an invalid byte becomes U+FFFD and ends it too).
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pieces, start = [], 0
    for i, token in enumerate(ids):
        decoder.decode(_token_bytes(tokenizer, token))
        if decoder.getstate()[0] == b"" or i == len(ids) - 1:
            pieces.append((start, i + 1))
            start = i + 1
    return pieces


def merge_spans(pieces: list[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    """At most ``limit`` contiguous spans covering ``pieces``, as even in piece count as possible."""
    if len(pieces) <= limit:
        return pieces
    cuts = [round(i * len(pieces) / limit) for i in range(limit + 1)]
    return [(pieces[a][0], pieces[b - 1][1]) for a, b in zip(cuts, cuts[1:])]


def _token_bytes(tokenizer, token: int) -> bytes:
    return b"" if token == EOT_ID else tokenizer.decode_single_token_bytes(token)


def _decode(tokenizer, ids: list[int]) -> str:
    return b"".join(_token_bytes(tokenizer, t) for t in ids).decode("utf-8", errors="replace")


def _logits_without(model, ids: list[int], spans: list[tuple[int, int]], cache: list, stop) -> torch.Tensor:
    """Logits (R, C) of the text with each span deleted in turn, sharing the whole text's cache.

    The text without span [s, e) is ids[:s] + ids[e:]: its first s positions are the whole text's,
    so their keys and values come from ``cache`` and only ids[e:] (at positions s, s+1, ...) is
    run. Many such suffixes go into one sequence whose attention mask lets each token see its own
    prefix's cached keys and the earlier tokens of its own suffix, nothing else.
    """
    rows = [_shortened(ids, start, end) for start, end in spans]  # (prefix length, suffix ids)
    out = []
    for group in _groups(rows, GROUP_TOKENS):
        if stop is not None and stop.is_set():
            raise Cancelled("Explanation stopped")
        out.append(_run_suffixes(model, group, cache))
    return torch.cat(out)


def _shortened(ids: list[int], start: int, end: int) -> tuple[int, list[int]]:
    """(cached prefix length, tokens to run) for ids without [start, end)."""
    if end < len(ids):
        return start, ids[end:]
    if start > 0:  # the last span: the shortened text ends at start - 1, re-run that one token
        return start - 1, ids[start - 1 : start]
    return 0, [EOT_ID]  # nothing left: read as an empty message is


def _groups(rows: list[tuple[int, list[int]]], budget: int):
    group, size = [], 0
    for row in rows:
        if group and size + len(row[1]) > budget:
            yield group
            group, size = [], 0
        group.append(row)
        size += len(row[1])
    if group:
        yield group


def _run_suffixes(model, rows: list[tuple[int, list[int]]], cache: list) -> torch.Tensor:
    """Logits (len(rows), C): the last token of each row's suffix, after its cached prefix."""
    device = cache[0][0].device
    prefix = torch.tensor([p for p, _ in rows], device=device)  # (R,)
    sizes = torch.tensor([len(s) for _, s in rows], device=device)  # (R,)
    new_ids = torch.tensor([[t for _, s in rows for t in s]], device=device)  # (1, N)
    N, P = new_ids.shape[1], int(prefix.max())
    row_of = torch.repeat_interleave(torch.arange(len(rows), device=device), sizes)  # (N,)
    first = torch.cumsum(sizes, 0) - sizes  # (R,) each row's first index in new_ids
    index = torch.arange(N, device=device)
    positions = prefix[row_of] + index - first[row_of]  # (N,) positions in the shortened texts
    sees_cache = torch.arange(P, device=device)[None, :] < prefix[row_of][:, None]  # (N, P)
    sees_new = (index[None, :] >= first[row_of][:, None]) & (index[None, :] <= index[:, None])  # (N, N)
    visible = torch.cat([sees_cache, sees_new], dim=1)  # (N, P + N)

    t = model.transformer
    x = t.wte(new_ids) + t.wpe(positions)[None]  # (1, N, C)
    for block, (k, v) in zip(t.h, cache):
        x, _ = block.forward_cached(x, (k[:, :, :P], v[:, :, :P]), visible)
    last = first + sizes - 1  # (R,)
    return model.score(t.ln_f(x[0, last]))  # (R, C)

"""Find resolved tickets like a new one, so its reply can start from an answer that worked before.

Similarity is the mean of two TF-IDF cosines over `subject + body`: word 1-2-grams catch shared
vocabulary ("VPN", "certificate"), character 3-5-grams inside word boundaries catch inflections,
typos, error codes and compound words (German "Druckerwarteschlange"), which matters because
the helpdesk data is in five languages. Both vectors are non-negative and L2-normalised, so the
similarity lies in [0, 1]. On the helpdesk data (600 tickets, leave-one-out on 100), the nearest
same-language neighbour shares the queue 52 % of the time, a random ticket 21 %.

Building is one vectorizer fit over the corpus (10,000 demo tickets: about 3 s on one core);
a query is two sparse matrix-vector products (about 35 ms at that size). The index is read-only
after it is built, so one instance can serve many drafts; rebuild it to pick up newly resolved
tickets.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hitl.ml.dataset import ticket_text
from hitl.store.orm import Ticket

WORD_WEIGHT = 0.5  # the character part gets the rest; 0.3-0.7 all measured within 2 points on helpdesk
DEFAULT_STORE_LIMIT = 10_000


def normalise_language(language: str | None) -> str | None:
    """`de-AT`, `DE` and `de_at` all mean `de`; blank means unknown."""
    code = (language or "").strip().lower().replace("_", "-").split("-")[0]
    return code or None


def store_ref(source: str, external_id: str) -> str:
    """How an indexed ticket is named: unique across sources, and readable by an operator."""
    return f"{source}:{external_id}"


class ReplyRecord(BaseModel):
    """One resolved ticket as the index sees it: what was asked, and the answer it got."""

    model_config = ConfigDict(frozen=True)

    ref: str = Field(min_length=1)
    text: str
    answer: str
    language: str | None = None


class Neighbour(BaseModel):
    """A resolved ticket similar to the query, with its answer."""

    model_config = ConfigDict(frozen=True)

    ref: str
    similarity: float = Field(ge=0.0, le=1.0)
    answer: str
    language: str | None = None


RecordLike = ReplyRecord | tuple[str, str, str] | tuple[str, str, str, str | None]


def _as_record(item: RecordLike) -> ReplyRecord:
    if isinstance(item, ReplyRecord):
        return item
    ref, text, answer, *rest = item
    return ReplyRecord(ref=ref, text=text, answer=answer, language=rest[0] if rest else None)


def _fit(vectorizer: TfidfVectorizer, texts: list[str]) -> sparse.csr_matrix | None:
    """None when the corpus has no usable term for this analyzer (only punctuation, say)."""
    try:
        return sparse.csr_matrix(vectorizer.fit_transform(texts))
    except ValueError:  # "empty vocabulary"
        return None


class ReplyIndex:
    """Nearest resolved tickets by text; records with an empty text or answer are left out."""

    def __init__(self, records: Iterable[ReplyRecord]) -> None:
        kept = [r for r in records if r.text.strip() and r.answer.strip()]
        self._records: list[ReplyRecord] = kept
        self._refs = np.array([r.ref for r in kept], dtype=object)
        self._languages = np.array([normalise_language(r.language) for r in kept], dtype=object)
        self._word = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, dtype=np.float32)
        self._char = TfidfVectorizer(
            analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, dtype=np.float32
        )
        texts = [r.text for r in kept]
        self._word_matrix = _fit(self._word, texts) if kept else None
        self._char_matrix = _fit(self._char, texts) if kept else None

    @classmethod
    def from_records(cls, records: Iterable[RecordLike]) -> ReplyIndex:
        """From ReplyRecords or (ref, text, answer[, language]) tuples."""
        return cls(_as_record(item) for item in records)

    @classmethod
    def from_store(cls, session: Session, limit: int = DEFAULT_STORE_LIMIT) -> ReplyIndex:
        """The `limit` newest tickets with a non-empty resolution: recent answers reflect how the
        clients' systems look today, and the limit bounds build time and memory."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        rows = session.execute(
            select(
                Ticket.source,
                Ticket.external_id,
                Ticket.subject,
                Ticket.body,
                Ticket.resolution,
                Ticket.language,
            )
            .where(Ticket.resolution.is_not(None), func.trim(Ticket.resolution) != "")
            .order_by(Ticket.id.desc())
            .limit(limit)
        ).all()
        return cls(
            ReplyRecord(
                ref=store_ref(source, external_id),
                text=ticket_text(subject, body),
                answer=resolution,
                language=language,
            )
            for source, external_id, subject, body, resolution, language in rows
        )

    def __len__(self) -> int:
        return len(self._records)

    @property
    def refs(self) -> list[str]:
        return [r.ref for r in self._records]

    def similarities(self, text: str) -> np.ndarray:
        """Similarity of `text` to every indexed ticket, in [0, 1], in index order."""
        scores = np.zeros(len(self._records), dtype=np.float64)
        for weight, vectorizer, matrix in (
            (WORD_WEIGHT, self._word, self._word_matrix),
            (1.0 - WORD_WEIGHT, self._char, self._char_matrix),
        ):
            if matrix is not None:
                query = vectorizer.transform([text])
                scores += weight * np.asarray((matrix @ query.T).toarray()).ravel()
        return np.clip(scores, 0.0, 1.0)

    def nearest(
        self,
        text: str,
        k: int = 3,
        language: str | None = None,
        exclude_refs: Collection[str] = (),
    ) -> list[Neighbour]:
        """The `k` most similar tickets, best first; tickets with no similarity at all are left out.

        With `language`, tickets in that language come first (an answer the operator can reuse
        as is beats a slightly closer one in another language); others only fill the remaining
        places. `exclude_refs` leaves tickets out, e.g. the ticket being answered itself.
        """
        if k < 1 or not self._records:
            return []
        scores = self.similarities(text)
        usable = scores > 0.0
        if exclude_refs:
            usable &= ~np.isin(self._refs, list(exclude_refs))
        wanted = normalise_language(language)
        chosen: list[int] = []
        if wanted is not None:
            same = usable & (self._languages == wanted)
            chosen = _top(scores, same, k)
            usable &= ~same
        chosen += _top(scores, usable, k - len(chosen))
        return [
            Neighbour(
                ref=self._records[i].ref,
                similarity=float(scores[i]),
                answer=self._records[i].answer,
                language=self._records[i].language,
            )
            for i in chosen
        ]


def _top(scores: np.ndarray, mask: np.ndarray, k: int) -> list[int]:
    """Indices of the k best scores among `mask`, best first (ties: index order, so stable)."""
    candidates = np.flatnonzero(mask)
    if k <= 0 or candidates.size == 0:
        return []
    order = np.lexsort((candidates, -scores[candidates]))[:k]
    return [int(i) for i in candidates[order]]

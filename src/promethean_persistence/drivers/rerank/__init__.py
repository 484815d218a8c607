"""Rerankers: rescore a search's top candidates against the query (see ``base.Reranker``)."""

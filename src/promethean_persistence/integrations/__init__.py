"""Adapters for other ecosystems: ``integrations.langchain`` (extra ``langchain``) and
``integrations.haystack`` (extra ``haystack``). Each imports its framework only when used."""

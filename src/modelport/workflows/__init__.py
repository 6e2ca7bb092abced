"""The Arazzo 1.0 workflow runner: client side only, it talks HTTP to any OpenAPI-described API."""

from modelport.workflows.document import ArazzoDocument, DocumentError, load
from modelport.workflows.runner import RunResult, WorkflowRunner

__all__ = ["ArazzoDocument", "DocumentError", "RunResult", "WorkflowRunner", "load"]

"""The HTTP schema: pydantic models of every request and response body (docs/serve.md publishes their JSON schema).

Conversation content is checked by `data.schema.validate_conversation`, the same rule the dataset readers use,
so a conversation the endpoint accepts is one the training data could hold. The OpenAI-compatible models carry
the fields OpenAI clients send and read (the `openai` SDK works against them); extra request fields are ignored,
as OpenAI-compatible servers (vLLM, ray.serve.llm) do.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from data.schema import ROLES, ExampleError, validate_conversation
from data.taxonomy import HORIZONS, LABELS, SCOPES


class Turn(BaseModel):
    role: Literal[ROLES]  # type: ignore[valid-type]
    content: str = Field(min_length=1)


class RouteRequest(BaseModel):
    """One conversation (`conversation`) or a batch (`conversations`), not both."""

    model_config = ConfigDict(extra="forbid")
    conversation: list[Turn] | None = None
    conversations: list[list[Turn]] | None = None

    @model_validator(mode="before")
    @classmethod
    def _check(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError(f"the body must be a JSON object, got {type(data).__name__}")
        one, many = data.get("conversation"), data.get("conversations")
        if (one is None) == (many is None):
            raise ValueError("give exactly one of `conversation` (a list of turns) or `conversations` (a list of them)")
        if many is not None:
            if not isinstance(many, list) or not many:
                raise ValueError("`conversations` must be a non-empty list of conversations")
            data = {**data, "conversations": [_turns(c, f"conversations[{i}]") for i, c in enumerate(many)]}
        else:
            data = {**data, "conversation": _turns(one, "conversation")}
        return data

    def batch(self) -> list[list[dict[str, str]]]:
        convs = self.conversations if self.conversations is not None else [self.conversation]
        return [[t.model_dump() for t in c] for c in convs]


def _turns(conversation: Any, where: str) -> list[dict[str, str]]:
    try:
        return validate_conversation(conversation, where)
    except ExampleError as e:  # pydantic reports a ValueError's message as the error
        raise ValueError(str(e)) from None


class Label(BaseModel):
    name: Literal[LABELS]  # type: ignore[valid-type]
    horizon: Literal[HORIZONS]  # type: ignore[valid-type]
    scope: Literal[SCOPES]  # type: ignore[valid-type]


class Timing(BaseModel):
    """Where a conversation's latency went, as the ingress and the model replica measured it."""
    queue_ms: float  # the ingress sending it to the replica -> its batch getting the engine (routing, batching, lock)
    engine_ms: float  # its batch's decode in the engine (the whole batch: one vLLM generate)
    batch_size: int  # conversations decoded in that batch


class RouteResult(BaseModel):
    labels: list[Label]  # taxonomy order; [] when the answer held no label (parsed false)
    persistence_horizon: str  # the set's horizon: shared by all labels, "mixed", or "none"
    memory_scope: str  # company | user | mixed | none
    parsed: bool  # at least one valid label in the answer
    unknown: list[str]  # answer pieces that are not labels
    text: str  # the model's raw answer
    finish_reason: str | None  # stop | length
    version: int  # the weight version that answered
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float  # receipt of the request to the answer, as the ingress measured it
    timing: Timing | None = None  # where latency_ms went (None: the replica did not say)


class RouteResponse(BaseModel):
    results: list[RouteResult]  # one per conversation, in request order
    model: str
    version: int  # the version of the first result (all equal unless a reload landed mid-request)


class ErrorBody(BaseModel):
    type: str  # OpenAI's class: invalid_request_error | authentication_error | server_error
    code: str  # the reason: malformed_json | json_too_deep | payload_too_large | too_many_turns | ... (docs/serve.md)
    message: str  # what is wrong, naming the field or limit


class ErrorResponse(BaseModel):
    error: ErrorBody


class VersionResponse(BaseModel):
    version: int
    checkpoint: str | None  # the adapter folder being served; null = base model
    model: str  # the base model
    model_id: str
    replica: str  # the model replica that answered
    max_tokens: int  # the answer cap in force (docs/serve.md: Deadlines, backpressure and shutdown)


class HealthResponse(BaseModel):
    status: Literal["ok", "draining"]  # draining (HTTP 503): shutting down, requests in flight finishing
    auth: bool  # whether an API key is required


# --- OpenAI-compatible -----------------------------------------------------------------------------------------


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: str | list[ContentPart] | None = None  # a string, or content parts: text parts only, joined by "\n"

    def text(self, where: str) -> str | None:
        if not isinstance(self.content, list):
            return self.content
        for j, part in enumerate(self.content):
            if part.type != "text" or not isinstance(part.text, str):
                what = f"a {part.type!r} part" if part.type != "text" else "a text part without `text`"
                raise ValueError(f"{where}.content[{j}]: only text parts (type 'text' with a string `text`) are "
                                 f"routed, got {what}")
        return "\n".join(part.text for part in self.content)


class ChatCompletionRequest(BaseModel):
    """The conversation to route is the `user` / `assistant` messages; `system` messages are dropped (the router has
    its own instructions) and decoding is always greedy, so sampling fields are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False

    def conversation(self) -> list[dict[str, str]]:
        turns = [{"role": m.role, "content": m.text(f"messages[{i}]")} for i, m in enumerate(self.messages)
                 if m.role not in ("system", "developer")]
        try:
            return validate_conversation(turns, "messages")
        except ExampleError as e:
            raise ValueError(f"{e} (system messages are dropped; the rest must be user/assistant turns)") from None


class ChatChoiceMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: ChatChoiceMessage
    finish_reason: str | None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    memroute: RouteResult  # the routing result behind the answer (labels with horizon and scope, version)


class ChunkDelta(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChunkChoice(BaseModel):
    index: int
    delta: ChunkDelta
    finish_reason: str | None


class ChatCompletionChunk(BaseModel):
    """`stream=true`: the whole answer in one chunk (a routing answer is a few tokens), then `data: [DONE]`."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage
    memroute: RouteResult


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "memroute"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def json_schemas() -> dict[str, dict]:
    """The JSON schema of each body, for docs/serve.md (`python -m serve.schema` prints them)."""
    models = (RouteRequest, RouteResponse, ErrorResponse, VersionResponse, HealthResponse, ChatCompletionRequest,
              ChatCompletionResponse, ChatCompletionChunk, ModelList)
    return {m.__name__: m.model_json_schema() for m in models}


if __name__ == "__main__":
    import json

    print(json.dumps(json_schemas(), indent=2))

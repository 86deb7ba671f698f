"""serve.py's HTTP side: one LitServe API per kind of input, its request schema checked by FastAPI
before a request reaches the model (a 422 naming the problem), so a malformed request never fails
the requests batched beside it."""

import base64
import binascii
import io
from typing import Annotated, Any

import litserve as ls
import torch
from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from PIL import Image
from pydantic import AfterValidator, BaseModel, Field

from src.data.inputs import InputError
from src.predictor import Predictor


def image_bytes(value: str) -> bytes:
    """The bytes of a base64-encoded image file; ValueError (a 422) when they are not one."""
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not the base64 encoding of an image file (PNG, JPEG, ...)") from None
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # a truncated file fails here, not inside the batch
    except (OSError, ValueError):
        raise ValueError("not a readable image file (PNG, JPEG, ...)") from None
    return data


def _image_file(value: str) -> str:
    image_bytes(value)
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


ImageFile = Annotated[str, AfterValidator(_image_file)]
Text = Annotated[str, AfterValidator(_not_blank)]


class ImageRequest(BaseModel):
    image: ImageFile = Field(description="an image file (PNG, JPEG, ...), base64-encoded")


class TextRequest(BaseModel):
    article: Text = Field(description="the article to summarize")


class VQARequest(ImageRequest):
    question: Text = Field(description="a question about the image")


class TaskAPI(ls.LitAPI):
    """The checkpoint's predictor behind LitServe: requests decoded to rows, batched, answered."""

    def __init__(self, predictor: Predictor, max_batch_size: int, batch_timeout: float, threads: int | None = None) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout)
        self.predictor, self.threads = predictor, threads

    def setup(self, device: str) -> None:
        """The predictor came built (and checked) from the server's process; only the worker's
        CPU threads are set here."""
        if self.threads:
            torch.set_num_threads(self.threads)

    def _row(self, request: BaseModel) -> Any:
        row = request.model_dump()
        if "image" in row:
            row["image"] = base64.b64decode(row["image"])
        try:
            return self.predictor.encode(row)
        except InputError as e:
            raise HTTPException(400, str(e)) from None

    def batch(self, items: list[Any]) -> list[Any]:
        return items

    def predict(self, x: Any) -> Any:
        """A list of items when LitServe batches (``max_batch_size > 1``), else one item."""
        if self.max_batch_size > 1:
            return self.predictor.forward(x)
        return self.predictor.forward([x])[0]

    def unbatch(self, answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return answers

    def encode_response(self, answer: dict[str, Any]) -> dict[str, Any]:
        return answer


# LitServe reads each endpoint's request schema from decode_request's annotation (evaluated: this
# module has no ``from __future__ import annotations``).
class ImageAPI(TaskAPI):
    def decode_request(self, request: ImageRequest) -> Any:
        return self._row(request)


class TextAPI(TaskAPI):
    def decode_request(self, request: TextRequest) -> Any:
        return self._row(request)


class VQAAPI(TaskAPI):
    def decode_request(self, request: VQARequest) -> Any:
        return self._row(request)


APIS = {"image": ImageAPI, "text": TextAPI, "vqa": VQAAPI}


async def one_line_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A malformed request's 422: the first problem in one line (``image: ...``), without
    FastAPI's echo of the whole body (a base64 image)."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
    message = str(first["msg"]).removeprefix("Value error, ")
    return JSONResponse(status_code=422, content={"detail": f"{where}: {message}"})

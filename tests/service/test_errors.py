"""Each error case of the contract, one by one, through the official client (status, type, param, code)."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from .conftest import Server, png


def err(exc: pytest.ExceptionInfo[openai.APIStatusError]) -> dict[str, Any]:
    body = exc.value.response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


@pytest.fixture
def client(live: Server, trusted: tuple[str, str]) -> openai.OpenAI:
    return live.client(trusted[1])


def test_bad_size(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(prompt="x", size="1536x1024")
    assert err(e)["param"] == "size" and err(e)["type"] == "invalid_request_error"


@pytest.mark.parametrize("n,code", [(0, "integer_below_min_value"), (11, "integer_above_max_value")])
def test_n_out_of_range(client: openai.OpenAI, n: int, code: str) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(prompt="x", n=n, size="256x256")
    assert err(e)["param"] == "n" and err(e)["code"] == code


def test_prompt_too_long(client: openai.OpenAI) -> None:
    client.images.generate(prompt="a" * 1000, size="256x256")  # the limit itself is fine
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(prompt="a" * 1001, size="256x256")
    assert err(e)["param"] == "prompt" and err(e)["code"] == "string_above_max_length"


def test_missing_prompt(live: Server, trusted: tuple[str, str]) -> None:
    r = httpx.post(
        live.url + "/v1/images/generations", json={"n": 1}, headers={"Authorization": f"Bearer {trusted[1]}"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "prompt"
    assert r.json()["error"]["code"] == "missing_required_parameter"


def test_missing_prompt_on_edit(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.images.edit(image=("a.png", png(64), "image/png"), prompt=openai.omit)  # type: ignore[arg-type]
    assert err(e)["param"] == "prompt"


def test_invalid_json(live: Server, trusted: tuple[str, str]) -> None:
    r = httpx.post(
        live.url + "/v1/images/generations",
        content=b"{nope",
        headers={"Authorization": f"Bearer {trusted[1]}", "content-type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_non_png(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.images.create_variation(image=("a.jpg", b"\xff\xd8\xff\xe0 not a png", "image/jpeg"))
    assert err(e)["param"] == "image"


def test_non_square(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.images.create_variation(image=("a.png", png(64, w=80), "image/png"))
    assert err(e)["param"] == "image"


def test_image_over_4mb(client: openai.OpenAI) -> None:
    big = png(64) + b"\0" * (4 * 1024 * 1024)
    with pytest.raises(openai.BadRequestError) as e:
        client.images.create_variation(image=("a.png", big, "image/png"))
    assert err(e)["param"] == "image"


def test_mask_size_mismatch(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.images.edit(
            image=("a.png", png(64), "image/png"), mask=("m.png", png(32), "image/png"), prompt="x"
        )
    assert err(e)["param"] == "mask"


def test_edit_without_mask_needs_transparency(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.images.edit(image=("a.png", png(64, mode="RGB"), "image/png"), prompt="x")
    assert err(e)["param"] == "image"


def test_unknown_model(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        client.images.generate(prompt="x", model="dall-e-9", size="256x256")
    assert err(e)["code"] == "model_not_found" and err(e)["param"] == "model"
    with pytest.raises(openai.NotFoundError):
        client.images.create_variation(image=("a.png", png(64), "image/png"), model="nope")


def test_bad_response_format(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(prompt="x", size="256x256", response_format="jpeg")  # type: ignore[arg-type]
    assert err(e)["param"] == "response_format"


def test_unknown_parameter(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(prompt="x", size="256x256", extra_body={"colour": "blue"})
    assert err(e) == {
        "message": "Unknown parameter: 'colour'.",
        "type": "invalid_request_error",
        "param": "colour",
        "code": "unknown_parameter",
    }
    with pytest.raises(openai.BadRequestError) as e:
        client.images.create_variation(image=("a.png", png(64), "image/png"), extra_body={"colour": "blue"})
    assert err(e)["code"] == "unknown_parameter"


def test_other_model_parameters(client: openai.OpenAI) -> None:
    client.images.generate(prompt="x", size="256x256", quality="standard")  # dall-e-2's own value
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(prompt="x", size="256x256", style="vivid")
    assert err(e)["param"] == "style"
    # an object in a form, as the client sends one (`svg[model]`): the same answer as in JSON (it was an
    # unknown parameter 'svg[model]')
    for call in (lambda: client.images.generate(prompt="x", size="256x256", extra_body={"svg": {"model": "x"}}),
                 lambda: client.images.edit(image=("a.png", png(64), "image/png"), prompt="x",
                                            extra_body={"svg": {"model": "x"}})):  # fmt: skip
        with pytest.raises(openai.BadRequestError) as e:
            call()
        assert (err(e)["param"], err(e)["code"]) == ("svg", "unsupported_parameter")


def test_unclip_extensions_are_accepted(live: Server, client: openai.OpenAI) -> None:
    client.images.generate(prompt="x", size="256x256", extra_body={"seed": 7, "steps": 3})
    assert live.engine.calls[-1][1]["seed"] == 7 and live.engine.calls[-1][1]["steps"] == 3


def test_auth_missing_and_invalid(live: Server) -> None:
    r = httpx.post(live.url + "/v1/images/generations", json={"prompt": "x"})
    assert r.status_code == 401 and r.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(openai.AuthenticationError) as e:
        live.client("sk-unclip-not-a-real-key").images.generate(prompt="x")
    assert err(e)["code"] == "invalid_api_key"


def test_engine_invalid_input_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(prompt="raise-invalid", size="256x256")
    assert err(e)["param"] == "prompt"


def test_unknown_route_is_openai_shaped(live: Server) -> None:
    r = httpx.get(live.url + "/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"


def test_an_unknown_api_route_is_404_invalid_url_whatever_the_method(live: Server) -> None:
    """The web app's mount answered anything but GET 405 Method Not Allowed, a known route with another method
    too (OpenAI: 404 Invalid URL)."""
    for method, path in (("POST", "/v1/nothing"), ("POST", "/v1/images/generation"), ("DELETE", "/v1/nothing"),
                         ("PUT", "/v1/images/edits"), ("PATCH", "/v1/moderations")):  # fmt: skip
        r = httpx.request(method, live.url + path)
        assert r.status_code == 404, (method, path, r.status_code)
        assert r.json()["error"] == {"message": f"Invalid URL ({method} {path})", "type": "invalid_request_error",
                                     "param": None, "code": None}  # fmt: skip
    assert httpx.get(live.url + "/").status_code == 200  # the web app is still served

"""Bot avatars: real images are squared and re-encoded; fakes, oversized files and pixel bombs are refused."""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image

from tests.control_plane.bots.helpers import add_tenant_member, animated_gif, audit_actions, image_bytes
from tests.factories import make_account, make_bot


def upload(data: bytes, name: str = "avatar.png", content_type: str = "image/png") -> dict:
    return {"file": (name, data, content_type)}


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (image_bytes("PNG", (300, 200)), "image/png"),
        (image_bytes("JPEG", (640, 480)), "image/jpeg"),
        (image_bytes("WEBP", (100, 120)), "image/webp"),
        (image_bytes("PNG", (50, 50), color="#00ff0080", mode="RGBA"), "image/png"),
        (animated_gif(), "image/gif"),
        # The declared type is ignored: the bytes decide.
        (image_bytes("JPEG", (64, 64)), "application/octet-stream"),
    ],
)
async def test_upload_squares_and_reencodes(
    client: httpx.AsyncClient, settings, data: bytes, content_type: str
) -> None:  # type: ignore[no-untyped-def]
    owner = await make_account(client)
    bot = await make_bot(client, owner)
    response = await client.put(
        f"/api/v1/bots/{bot['id']}/avatar", files=upload(data, content_type=content_type), headers=owner.headers
    )
    assert response.status_code == 200, response.text
    avatar_url = response.json()["avatar_url"]
    assert avatar_url == f"http://testserver/bots/{bot['public_id']}/avatar?v=1"

    private = await client.get(f"/api/v1/bots/{bot['id']}/avatar", headers=owner.headers)
    assert private.status_code == 200
    assert private.headers["content-type"] in ("image/webp", "image/png")
    image = decoded(private.content)
    assert image.format in ("WEBP", "PNG")
    assert image.size == (settings.avatar_size_px, settings.avatar_size_px)

    public = await client.get(avatar_url.removeprefix("http://testserver"))
    assert public.status_code == 200
    assert public.content == private.content
    assert "immutable" in public.headers["cache-control"]
    assert public.headers["cross-origin-resource-policy"] == "cross-origin"
    assert await audit_actions(owner.tenant_id) == ["bot.created", "bot.avatar.updated"]


async def test_public_avatar_caching_and_versions(client: httpx.AsyncClient) -> None:
    owner = await make_account(client)
    bot = await make_bot(client, owner)
    url = f"/api/v1/bots/{bot['id']}/avatar"
    await client.put(url, files=upload(image_bytes()), headers=owner.headers)
    second = (await client.put(url, files=upload(image_bytes(color="#0000ff")), headers=owner.headers)).json()
    assert second["avatar_url"].endswith("?v=2")

    public = f"/bots/{bot['public_id']}/avatar"
    stale = await client.get(public, params={"v": 1})
    assert stale.status_code == 200 and "immutable" not in stale.headers["cache-control"]
    etag = stale.headers["etag"]
    not_modified = await client.get(public, params={"v": 2}, headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    # A language-free public address: not redirected to /{lang}/bots/... like the pages are.
    assert (await client.get(public)).status_code == 200
    assert (await client.get("/bots/b_doesnotexist/avatar")).status_code == 404


@pytest.mark.parametrize(
    "data",
    [
        b"I am not an image, I only pretend to be one.\n" * 10,
        b"",
        image_bytes("PNG")[:60],  # truncated
        image_bytes("BMP"),  # a real image, but not an allowed type
        b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>",
    ],
)
async def test_fake_or_unsupported_images_are_422(client: httpx.AsyncClient, data: bytes) -> None:
    owner = await make_account(client)
    bot = await make_bot(client, owner)
    response = await client.put(f"/api/v1/bots/{bot['id']}/avatar", files=upload(data), headers=owner.headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["fields"] == [{"field": "file", "message": "Upload a PNG, JPEG, WEBP or GIF image."}]
    assert (await client.get(f"/api/v1/bots/{bot['id']}/avatar", headers=owner.headers)).status_code == 404


async def test_oversized_file_is_413(client: httpx.AsyncClient, settings) -> None:  # type: ignore[no-untyped-def]
    owner = await make_account(client)
    bot = await make_bot(client, owner)
    big = image_bytes("PNG") + b"\0" * settings.max_avatar_bytes
    response = await client.put(f"/api/v1/bots/{bot['id']}/avatar", files=upload(big), headers=owner.headers)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


async def test_decompression_bomb_is_refused(client: httpx.AsyncClient) -> None:
    owner = await make_account(client)
    bot = await make_bot(client, owner)
    bomb = image_bytes("PNG", (6000, 6000), color="#ffffff", mode="1")  # a few kB that decode to 36 megapixels
    assert len(bomb) < 100_000
    response = await client.put(f"/api/v1/bots/{bot['id']}/avatar", files=upload(bomb), headers=owner.headers)
    assert response.status_code == 422


async def test_missing_file_field_is_422(client: httpx.AsyncClient) -> None:
    owner = await make_account(client)
    bot = await make_bot(client, owner)
    response = await client.put(
        f"/api/v1/bots/{bot['id']}/avatar",
        files={"other": ("a.png", image_bytes(), "image/png")},
        headers=owner.headers,
    )
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "file"


async def test_remove_avatar(client: httpx.AsyncClient) -> None:
    owner = await make_account(client)
    bot = await make_bot(client, owner)
    url = f"/api/v1/bots/{bot['id']}/avatar"
    await client.put(url, files=upload(image_bytes()), headers=owner.headers)
    assert (await client.delete(url, headers=owner.headers)).status_code == 204
    assert (await client.get(url, headers=owner.headers)).status_code == 404
    assert (await client.get(f"/api/v1/bots/{bot['id']}", headers=owner.headers)).json()["avatar_url"] is None
    assert (await client.get(f"/bots/{bot['public_id']}/avatar")).status_code == 404
    assert (await client.delete(url, headers=owner.headers)).status_code == 204
    assert await audit_actions(owner.tenant_id) == ["bot.created", "bot.avatar.updated", "bot.avatar.removed"]


async def test_viewer_cannot_change_the_avatar(client: httpx.AsyncClient) -> None:
    owner = await make_account(client)
    bot = await make_bot(client, owner)
    viewer = await make_account(client)
    await add_tenant_member(owner.tenant_id, viewer, "viewer")
    headers = {**viewer.headers, "X-Tenant-Id": owner.tenant_id}
    url = f"/api/v1/bots/{bot['id']}/avatar"
    assert (await client.put(url, files=upload(image_bytes()), headers=headers)).status_code == 403
    assert (await client.delete(url, headers=headers)).status_code == 403
    await client.put(url, files=upload(image_bytes()), headers=owner.headers)
    assert (await client.get(url, headers=headers)).status_code == 200

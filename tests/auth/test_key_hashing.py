"""Keys are stored hashed: no plaintext key, nor its secret part, is anywhere in the database — not in
any table, and (SQLite) not in the database file or its write-ahead log."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from callgate.auth import keys as keylib
from callgate.auth.keys import KeyType
from callgate.store.schema import metadata
from tests.support.world import World


def database_files(world: World) -> list[Path]:
    """The SQLite database file and its WAL; nothing for PostgreSQL."""
    url = make_url(world.runtime.db.url)
    if url.get_backend_name() != "sqlite" or not url.database:
        return []
    main = Path(url.database)
    return [p for p in (main, main.with_name(main.name + "-wal")) if p.exists()]


async def table_dump(world: World) -> str:
    """Every row of every table, as text."""
    out = []
    async with world.runtime.db.read() as s:
        for table in metadata.sorted_tables:
            rows = await s.execute(text(f'SELECT * FROM "{table.name}"'))
            out.extend(" ".join(str(v) for v in row) for row in rows)
    return "\n".join(out)


async def test_no_plaintext_key_at_rest(world: World) -> None:
    team = await world.team("acme")
    plaintexts = [
        team.secret,
        await team.key(KeyType.SECRET, name="backend"),
        await team.key(KeyType.PUBLISHABLE, allowed_origins=["https://a.example"]),
        await team.key(KeyType.SHARED, agent_ids=[team.agent_id]),
    ]
    for key in plaintexts:  # use each key, so last_used_at and any caches are written too
        headers = {**team.auth(key), "Origin": "https://a.example"}
        r = await world.client.post("/v1/web-calls/token", json={"agent_id": team.agent_id}, headers=headers)
        assert r.status_code == 201, r.text

    parsed = [keylib.parse(k) for k in plaintexts]
    assert all(p is not None for p in parsed)
    dump = await table_dump(world)
    blobs = [p.read_bytes() for p in database_files(world)]
    if world.runtime.db.is_sqlite:
        assert blobs, "the SQLite database file was not found"
    for key, p in zip(plaintexts, parsed, strict=True):
        assert p is not None
        # The lookup id is stored: finding it proves we search where the key rows are.
        assert p.lookup_id in dump
        assert keylib.hash_secret(p.secret) in dump
        assert any(p.lookup_id.encode() in blob for blob in blobs) or not blobs
        for secret in (key, p.secret, p.secret[:16], p.secret[16:]):
            assert secret not in dump
            for blob in blobs:
                assert secret.encode() not in blob


async def test_last_used_at_is_set_on_use(world: World) -> None:
    team = await world.team("acme")
    key = await team.key(KeyType.SECRET)
    p = keylib.parse(key)
    assert p is not None

    async def last_used() -> object:
        async with world.runtime.db.read() as s:
            row = await s.execute(
                text("SELECT last_used_at FROM api_key WHERE lookup_id = :l"), {"l": p.lookup_id}
            )
            return row.scalar_one()

    assert await last_used() is None
    assert (await world.client.get("/v1/agents", headers=team.auth(key))).status_code == 200
    assert await last_used() is not None

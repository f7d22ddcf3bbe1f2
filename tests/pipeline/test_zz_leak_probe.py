import asyncio
async def test_leaks() -> None:
    asyncio.get_running_loop().create_task(asyncio.sleep(10))

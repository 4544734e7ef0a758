# escape: coroutine frame via cr_frame | source: asyncio-based pyjail escapes
async def co():
    return 1
@export
def attack():
    return co().cr_frame

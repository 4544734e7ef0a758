# escape: uuid4 | source: non-determinism
import uuid
@export
def attack():
    return str(uuid.uuid4())

# escape: vars() to read an object's dict | source: object introspection
@export
def attack():
    return vars(ctx)

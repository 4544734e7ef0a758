# escape: async generator frame via ag_frame | source: pyjail write-ups on ag_frame
@export
def attack():
    return ctx.ag_frame

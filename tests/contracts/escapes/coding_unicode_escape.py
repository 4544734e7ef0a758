# escape: coding: unicode_escape declaration | source: encoding-declaration smuggling
# -*- coding: unicode_escape -*-
@export
def attack():
    return 1

# escape: coding: utf-7 declaration hiding code | source: encoding-declaration smuggling
# coding: utf-7
@export
def attack():
    return 1

"""An in-memory stand-in for the part of salt.cache.Cache that EOS uses."""

import copy


class MemoryCache:
    """store, fetch, flush and list over dicts; values are copied, as a real cache would."""

    def __init__(self):
        self.banks = {}

    def store(self, bank, key, data):
        self.banks.setdefault(bank, {})[key] = copy.deepcopy(data)

    def fetch(self, bank, key):
        return copy.deepcopy(self.banks.get(bank, {}).get(key, {}))

    def flush(self, bank, key=None):
        if key is None:
            return self.banks.pop(bank, None) is not None
        return self.banks.get(bank, {}).pop(key, None) is not None

    def list(self, bank):
        return list(self.banks.get(bank, {}))

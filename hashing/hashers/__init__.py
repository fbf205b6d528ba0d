"""Hash methods: float embeddings -> packed binary codes.

``make_hasher(method, n_bits, seed)`` builds one by name; ``save_hasher`` / ``load_hasher`` store
it as ``config.json`` + ``weights.safetensors``. New methods subclass ``Hasher`` and decorate
the class with ``register_hasher`` in a module ``hashing/hashers/<method>.py`` (imported on
first use by name, so ``load_hasher`` finds it).
"""

from hashing.hashers.base import Hasher, ProjectionHasher, hasher_class, known_methods, make_hasher, register_hasher
from hashing.hashers.itq import ItqHasher
from hashing.hashers.lsh import LshHasher
from hashing.hashers.storage import FORMAT_VERSION, ModelLoadError, load_hasher, save_hasher

__all__ = [
    "FORMAT_VERSION",
    "Hasher",
    "ItqHasher",
    "LshHasher",
    "ModelLoadError",
    "ProjectionHasher",
    "hasher_class",
    "known_methods",
    "load_hasher",
    "make_hasher",
    "register_hasher",
    "save_hasher",
]

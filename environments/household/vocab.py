"""The household vocabulary: rooms, receptacle types, object types and where objects belong.

Names follow ALFWorld's (one lowercase word each: ``sinkbasin``, ``desklamp``). The tables are
data, not code paths: the world generator and the goal sampler read them, so adding an object
type here is all it takes to use it.
"""

from __future__ import annotations

# Receptacle kinds. A "container" opens and closes and starts closed (ALFWorld's cabinets,
# drawers, fridges); a "surface" is always reachable; a "lamp" holds nothing and is used.
SURFACE, CONTAINER, LAMP = "surface", "container", "lamp"

RECEPTACLES: dict[str, str] = {
    "armchair": SURFACE, "bathtubbasin": SURFACE, "bed": SURFACE, "cabinet": CONTAINER,
    "coffeemachine": SURFACE, "coffeetable": SURFACE, "countertop": SURFACE, "desk": SURFACE,
    "desklamp": LAMP, "diningtable": SURFACE, "drawer": CONTAINER, "dresser": SURFACE,
    "floorlamp": LAMP, "fridge": CONTAINER, "garbagecan": SURFACE, "handtowelholder": SURFACE,
    "laundryhamper": SURFACE, "microwave": CONTAINER, "safe": CONTAINER, "shelf": SURFACE,
    "sidetable": SURFACE, "sinkbasin": SURFACE, "sofa": SURFACE, "stoveburner": SURFACE,
    "toaster": SURFACE, "toilet": SURFACE, "toiletpaperhanger": SURFACE, "towelholder": SURFACE,
    "tvstand": SURFACE,
}

# The appliance each transforming task uses, and the verb of its command.
APPLIANCE = {"heat": "microwave", "cool": "fridge", "clean": "sinkbasin"}
LAMPS = ("desklamp", "floorlamp")

# room -> receptacle type -> the most of that type a room of this kind holds.
ROOMS: dict[str, dict[str, int]] = {
    "kitchen": {
        "cabinet": 8, "coffeemachine": 1, "countertop": 3, "diningtable": 2, "drawer": 5, "fridge": 1,
        "garbagecan": 1, "microwave": 1, "shelf": 3, "sinkbasin": 1, "stoveburner": 4, "toaster": 1,
    },
    "bathroom": {
        "bathtubbasin": 1, "cabinet": 4, "countertop": 1, "drawer": 4, "garbagecan": 1, "handtowelholder": 1,
        "shelf": 2, "sinkbasin": 2, "toilet": 1, "toiletpaperhanger": 1, "towelholder": 1,
    },
    "bedroom": {
        "armchair": 1, "bed": 1, "desk": 2, "desklamp": 1, "drawer": 6, "dresser": 1, "garbagecan": 1,
        "laundryhamper": 1, "safe": 1, "shelf": 4, "sidetable": 2,
    },
    "livingroom": {
        "armchair": 2, "cabinet": 4, "coffeetable": 1, "diningtable": 1, "drawer": 4, "dresser": 1,
        "floorlamp": 1, "garbagecan": 1, "shelf": 4, "sidetable": 2, "sofa": 1, "tvstand": 1,
    },
}

# Every room of a kind has its lamp (light tasks need one); "full" layouts also have the rest.
ROOM_LAMP = {"bedroom": "desklamp", "livingroom": "floorlamp"}
ROOM_CORE: dict[str, tuple[str, ...]] = {
    "kitchen": ("countertop", "fridge", "microwave", "sinkbasin"),
    "bathroom": ("countertop", "sinkbasin", "toilet"),
    "bedroom": ("bed", "desk", "desklamp"),
    "livingroom": ("coffeetable", "floorlamp", "sofa"),
}

# Capability tags: h = can be heated, c = cooled, w = washed (cleaned), l = looked at under a lamp.
# object type -> (tags, receptacle types it is found in and may be put in).
OBJECTS: dict[str, tuple[str, tuple[str, ...]]] = {
    # kitchen
    "apple": ("hcw", ("countertop", "diningtable", "fridge", "garbagecan", "microwave", "sinkbasin")),
    "bowl": ("cwl", ("cabinet", "coffeetable", "countertop", "desk", "diningtable", "fridge", "microwave", "shelf",
                     "sidetable", "sinkbasin")),
    "bread": ("hc", ("cabinet", "countertop", "diningtable", "fridge", "microwave")),
    "butterknife": ("w", ("countertop", "diningtable", "drawer", "sinkbasin")),
    "cup": ("hcwl", ("cabinet", "countertop", "diningtable", "fridge", "microwave", "shelf", "sinkbasin")),
    "dishsponge": ("w", ("cabinet", "countertop", "diningtable", "drawer", "sinkbasin")),
    "egg": ("hcw", ("countertop", "diningtable", "fridge", "garbagecan", "microwave", "sinkbasin")),
    "fork": ("w", ("countertop", "diningtable", "drawer", "sinkbasin")),
    "kettle": ("w", ("cabinet", "countertop", "diningtable", "shelf", "sinkbasin", "stoveburner")),
    "knife": ("w", ("countertop", "diningtable", "drawer", "sinkbasin")),
    "ladle": ("w", ("countertop", "diningtable", "drawer", "sinkbasin")),
    "lettuce": ("cw", ("countertop", "diningtable", "fridge", "sinkbasin")),
    "mug": ("hcwl", ("cabinet", "coffeemachine", "countertop", "desk", "diningtable", "fridge", "microwave",
                     "shelf", "sidetable", "sinkbasin")),
    "pan": ("cw", ("cabinet", "countertop", "diningtable", "fridge", "sinkbasin", "stoveburner")),
    "peppershaker": ("", ("cabinet", "countertop", "diningtable", "drawer", "shelf")),
    "plate": ("hcwl", ("cabinet", "countertop", "diningtable", "fridge", "microwave", "shelf", "sinkbasin")),
    "pot": ("cw", ("cabinet", "countertop", "diningtable", "fridge", "sinkbasin", "stoveburner")),
    "potato": ("hcw", ("countertop", "diningtable", "fridge", "garbagecan", "microwave", "sinkbasin")),
    "saltshaker": ("", ("cabinet", "countertop", "diningtable", "drawer", "shelf")),
    "spatula": ("w", ("countertop", "diningtable", "drawer", "sinkbasin")),
    "spoon": ("w", ("countertop", "diningtable", "drawer", "sinkbasin")),
    "tomato": ("hcw", ("countertop", "diningtable", "fridge", "garbagecan", "microwave", "sinkbasin")),
    "winebottle": ("c", ("cabinet", "countertop", "diningtable", "fridge", "shelf")),
    # bathroom
    "candle": ("", ("cabinet", "countertop", "drawer", "shelf", "toilet")),
    "cloth": ("w", ("bathtubbasin", "cabinet", "countertop", "drawer", "laundryhamper", "sinkbasin")),
    "handtowel": ("", ("cabinet", "countertop", "handtowelholder", "shelf")),
    "soapbar": ("w", ("bathtubbasin", "cabinet", "countertop", "garbagecan", "sinkbasin", "toilet")),
    "soapbottle": ("", ("cabinet", "countertop", "garbagecan", "shelf", "toilet")),
    "spraybottle": ("", ("cabinet", "countertop", "garbagecan", "shelf", "toilet")),
    "toiletpaper": ("", ("cabinet", "countertop", "garbagecan", "shelf", "toilet", "toiletpaperhanger")),
    "towel": ("", ("cabinet", "countertop", "shelf", "towelholder")),
    # bedroom and living room
    "alarmclock": ("l", ("desk", "dresser", "shelf", "sidetable")),
    "baseballbat": ("", ("armchair", "bed", "desk")),
    "basketball": ("", ("armchair", "bed", "desk")),
    "book": ("l", ("bed", "coffeetable", "desk", "drawer", "dresser", "shelf", "sidetable", "sofa")),
    "box": ("l", ("armchair", "cabinet", "coffeetable", "diningtable", "dresser", "shelf", "sofa")),
    "cd": ("l", ("desk", "drawer", "dresser", "garbagecan", "safe", "shelf", "sidetable")),
    "cellphone": ("l", ("armchair", "bed", "desk", "drawer", "dresser", "safe", "shelf", "sidetable", "sofa")),
    "creditcard": ("l", ("armchair", "coffeetable", "desk", "drawer", "dresser", "safe", "shelf", "sidetable",
                         "sofa")),
    "keychain": ("l", ("armchair", "coffeetable", "desk", "drawer", "dresser", "safe", "shelf", "sidetable",
                       "sofa")),
    "laptop": ("l", ("armchair", "bed", "coffeetable", "desk", "dresser", "sidetable", "sofa")),
    "newspaper": ("l", ("armchair", "coffeetable", "diningtable", "garbagecan", "shelf", "sidetable", "sofa")),
    "pen": ("l", ("desk", "drawer", "dresser", "shelf", "sidetable")),
    "pencil": ("l", ("desk", "drawer", "dresser", "shelf", "sidetable")),
    "pillow": ("l", ("armchair", "bed", "sofa")),
    "remotecontrol": ("l", ("armchair", "coffeetable", "drawer", "dresser", "sidetable", "sofa", "tvstand")),
    "statue": ("l", ("coffeetable", "desk", "diningtable", "dresser", "shelf", "sidetable", "tvstand")),
    "teddybear": ("", ("armchair", "bed", "desk", "dresser", "shelf")),
    "tennisracket": ("", ("bed", "desk", "dresser")),
    "tissuebox": ("l", ("coffeetable", "countertop", "dresser", "shelf", "sidetable", "toilet")),
    "vase": ("l", ("cabinet", "coffeetable", "diningtable", "dresser", "shelf", "sidetable", "tvstand")),
    "watch": ("l", ("coffeetable", "desk", "drawer", "dresser", "safe", "shelf", "sidetable")),
}

# The object types each kind of room holds (a type appears only where it has a receptacle).
ROOM_OBJECTS: dict[str, tuple[str, ...]] = {
    "kitchen": (
        "apple", "bowl", "bread", "butterknife", "cup", "dishsponge", "egg", "fork", "kettle", "knife", "ladle",
        "lettuce", "mug", "pan", "peppershaker", "plate", "pot", "potato", "saltshaker", "soapbottle", "spatula",
        "spoon", "tomato", "winebottle", "creditcard", "cellphone",
    ),
    "bathroom": (
        "candle", "cloth", "dishsponge", "handtowel", "soapbar", "soapbottle", "spraybottle", "tissuebox",
        "toiletpaper", "towel",
    ),
    "bedroom": (
        "alarmclock", "baseballbat", "basketball", "book", "bowl", "cd", "cellphone", "cloth", "creditcard",
        "keychain", "laptop", "mug", "pen", "pencil", "pillow", "teddybear", "tennisracket", "watch",
    ),
    "livingroom": (
        "book", "bowl", "box", "creditcard", "keychain", "laptop", "newspaper", "pillow", "remotecontrol",
        "statue", "tissuebox", "vase", "watch",
    ),
}

TASK_TYPES = (
    "pick_and_place", "look_at_obj_in_light", "pick_clean_then_place", "pick_heat_then_place",
    "pick_cool_then_place", "pick_two_obj_and_place",
)

# task type -> (the capability tag the goal object needs, the appliance type it uses).
TASK_NEEDS: dict[str, tuple[str, str | None]] = {
    "pick_and_place": ("", None),
    "look_at_obj_in_light": ("l", None),
    "pick_clean_then_place": ("w", "sinkbasin"),
    "pick_heat_then_place": ("h", "microwave"),
    "pick_cool_then_place": ("c", "fridge"),
    "pick_two_obj_and_place": ("", None),
}

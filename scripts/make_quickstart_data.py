#!/usr/bin/env python3
"""Generate the small, download-free data sets used by the trainhub quickstart.

Writes four files in config/data/: stories.jsonl (~400 KB) and stories_eval.jsonl (~25 KB),
``{"text": ...}`` documents of 3-12 sentences about a small invented world (people, pets,
towns, weather, colours, counting, days of the week, cause and effect); and chat.jsonl (1200)
and chat_eval.jsonl (60), OpenAI-format conversations whose answers follow fixed rules
(arithmetic, days, colours, letter counts, facts about the same world, greetings).

Why: the quickstart must train a tiny language model with no downloads and show its loss
falling within a few hundred steps, so the text uses a few hundred words, many templates and
one consistent set of facts. Standard library only, one fixed ``random.Random(seed)`` per
file: every run is byte-identical. All text is written here and released under CC0 1.0
(see config/data/README.md).
"""
import json
import random
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent.parent / "config" / "data"
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
NUMS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
        "fourteen fifteen sixteen seventeen eighteen nineteen twenty").split()
PRON = {"f": ("she", "her", "her"), "m": ("he", "him", "his")}  # subject, object, possessive

# name | sex | town | job | what the job does | pet | pet name | pet colour | favourite colour | market day
PEOPLE = [dict(zip(("name", "sex", "town", "job", "does", "pet", "pet_name", "pet_colour", "fav", "mday"),
                   row.split("|"), strict=True)) for row in """\
Mia|f|Millbrook|baker|bakes bread and cakes|cat|Pip|orange|yellow|Saturday
Tom|m|Oakridge|farmer|grows carrots and corn|dog|Rex|brown|green|Monday
Lena|f|Oakridge|teacher|teaches children to read|rabbit|Snowball|white|purple|Wednesday
Sam|m|Riverton|fisher|catches fish in the river|duck|Puddle|yellow|blue|Friday
Ava|f|Sunvale|painter|paints pictures of flowers|bird|Sky|blue|red|Tuesday
Ben|m|Pinecrest|builder|builds houses of stone|horse|Star|black|orange|Thursday
Lily|f|Lakeside|doctor|helps people who are sick|turtle|Moss|green|pink|Sunday
Max|m|Stonehill|gardener|grows roses and tulips|goat|Billy|grey|green|Saturday
Rosa|f|Riverton|carpenter|makes tables and chairs|dog|Biscuit|white|red|Monday
Leo|m|Millbrook|mail carrier|brings letters to every house|cat|Shadow|black|blue|Wednesday
Nora|f|Pinecrest|cook|makes soup for the whole town|hen|Dot|brown|yellow|Friday
Finn|m|Sunvale|shopkeeper|sells apples and bread|pig|Rosie|pink|purple|Tuesday
Ella|f|Stonehill|farmer|grows carrots and corn|sheep|Cloud|white|green|Thursday
Jack|m|Lakeside|teacher|teaches children to read|frog|Hopper|green|orange|Sunday""".splitlines()]
# town: (where it is, landmark, landmark colour, a fixed fact)
TOWNS = {"Millbrook": ("by a small brook", "mill", "red", "The mill turns all day and makes flour."),
         "Oakridge": ("on a hill of oak trees", "school", "yellow", "Children climb the oak trees after school."),
         "Riverton": ("beside the big river", "bridge", "grey", "Boats sail under the bridge every morning."),
         "Sunvale": ("in a sunny valley", "windmill", "white", "The fields around the town are full of wheat."),
         "Pinecrest": ("at the edge of the pine forest", "tower", "brown", "The air smells of pine trees."),
         "Lakeside": ("next to a quiet lake", "boat house", "blue", "Ducks and swans swim on the lake."),
         "Stonehill": ("on a rocky hill", "well", "green", "All the houses are made of stone.")}
# animal | sound ("-" for none) | food | ability
ANIMALS = {a: (s if s != "-" else None, f, c) for a, s, f, c in (row.split("|") for row in (
    "cat|meow|fish|climb trees; dog|woof|bones|run fast; cow|moo|grass|give milk; duck|quack|bread crumbs|swim; "
    "bird|tweet|seeds|fly; horse|neigh|hay|pull a cart; sheep|baa|grass|grow thick wool; "
    "pig|oink|apples|roll in the mud; rabbit|-|carrots|hop; turtle|-|leaves|hide in its shell; "
    "goat|baa|hay|climb rocks; hen|cluck|corn|lay eggs; frog|ribbit|flies|jump; owl|hoot|mice|see at night; "
    "mouse|squeak|cheese|hide in small holes; fox|-|berries|dig holes").split("; "))}
COLOUR_FACTS = [tuple(f.rsplit(" ", 2)) for f in (
    "the sky is blue; grass is green; snow is white; the sun is yellow; bananas are yellow; ripe tomatoes are red; "
    "coal is black; carrots are orange; lemons are yellow; plums are purple; strawberries are red; "
    "chocolate is brown; milk is white; rain clouds are grey; pumpkins are orange").split("; ")]
COLOUR_FACTS += [(f"the {lm} in {t}", "is", c) for t, (_, lm, c, _) in TOWNS.items()]
# weather: (what a person does, what happens, advice)
WEATHER = {"rainy": ("took an umbrella", "The streets were wet.", "take an umbrella"),
           "sunny": ("wore a hat", "The children played outside.", "wear a hat"),
           "snowy": ("wore warm boots", "Everything was white.", "wear warm boots"),
           "windy": ("flew a kite", "The trees moved in the wind.", "hold on to your hat"),
           "cold": ("wore a thick coat", "The pond froze.", "wear a thick coat"),
           "hot": ("drank a lot of water", "The dogs slept in the shade.", "drink a lot of water"),
           "foggy": ("walked slowly", "Nobody could see the hills.", "walk slowly and carefully")}
FEELINGS = [("hungry", "ate some bread"), ("tired", "went to bed early"), ("cold", "sat by the fire"),
            ("thirsty", "drank a glass of water"), ("bored", "read a book"), ("sad", "called a friend")]
THINGS = [tuple(t.split("/")) for t in "apple/apples egg/eggs leaf/leaves cookie/cookies shell/shells "
          "flower/flowers book/books stone/stones carrot/carrots button/buttons cup/cups pear/pears".split()]
PLACES = ["market", "park", "forest", "library", "garden", "meadow", "orchard", "field"]
ITEMS = ["hat", "scarf", "ball", "kite", "bag", "glove", "key"]
SPOTS = ["the old tree", "a big rock", "the gate", "the bench", "the fence"]
TIMES = ["One morning", "One sunny afternoon", "Last week", "One evening", "Early one day"]
COLOURS = ["red", "blue", "green", "yellow", "orange", "purple", "white", "black", "brown", "grey", "pink"]
ADJS = ["small", "big", "young", "old", "shy", "friendly", "sleepy"]
WORDS = sorted(set(PLACES + ITEMS + COLOURS + list(ANIMALS) + [s for s, _ in THINGS]
                   + ["moon", "bread", "river", "town", "tree", "banana", "rain", "boat", "letter"]))


def an(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def cap(s: str) -> str:
    return s[0].upper() + s[1:]


def nxt(day: str, k: int = 1) -> str:
    return DAYS[(DAYS.index(day) + k) % 7]


def blocks(rng: random.Random, p: dict) -> list[list[str]]:
    """Every kind of story block (3-6 sentences each) about person p; story() picks a few."""
    s, o, ps = PRON[p["sex"]]
    n, pet, t = p["name"], p["pet_name"], p["town"]
    q = rng.choice([x for x in PEOPLE if x is not p])  # a friend from anywhere
    d, w, (sg, pl) = rng.choice(DAYS), rng.choice(list(WEATHER)), rng.choice(THINGS)
    (f1, a1), (f2, a2) = rng.sample(FEELINGS, 2)
    where, landmark, colour, fact = TOWNS[t]
    intro = [f"{cap(s)} is {an(p['job'])}.", f"Every day, {s} {p['does']}.",
             f"{n} has {an(p['pet_colour'] + ' ' + p['pet'])} named {pet}.",
             f"{pet} likes to eat {ANIMALS[p['pet']][1]}.", f"{n}'s favourite colour is {p['fav']}.",
             f"Every {p['mday']}, {n} goes to the market."]
    keep = sorted(rng.sample(range(len(intro)), rng.randint(2, 5)))  # a subset, in the original order
    a, found = rng.randint(2, 9), rng.random() < 0.5  # counting: found more, or gave some away
    b = rng.randint(1, 9) if found else rng.randint(1, a - 1)
    tot = a + b if found else a - b
    animals = []
    for x in rng.sample(list(ANIMALS), 2):
        sound, food, can = ANIMALS[x]
        animals += [f"{cap(an(x))} says {sound}." if sound else f"{cap(an(x))} is very quiet.",
                    f"{cap(an(x))} likes to eat {food}.", f"{cap(an(x))} can {can}."]
    wild, item = rng.choice([x for x in ANIMALS if x != p["pet"]]), rng.choice(ITEMS)
    wild_food = ANIMALS[wild][1]
    return [
        [f"{n} lives in {t}."] + [intro[i] for i in keep],
        [f"{t} is a small town {where}.", f"The {landmark} in {t} is {colour}.", fact,
         " and ".join(x["name"] for x in PEOPLE if x["town"] == t) + f" live in {t}."][: rng.randint(3, 4)],
        [f"On {d}, it was {w} in {t}.", f"Because it was {w}, {n} {WEATHER[w][0]}.", WEATHER[w][1]]
        + [f"{n} and {pet} went to the {rng.choice(PLACES)} together."] * rng.randint(0, 1)
        + [f"The next day was {nxt(d)}."] * rng.randint(0, 1),
        [f"{n} had {NUMS[a]} {pl}.",
         f"Then {s} found {NUMS[b]} more." if found else f"{cap(s)} gave {NUMS[b]} to {q['name']}.",
         f"Now {s} has {NUMS[tot]} {sg if tot == 1 else pl}."]
        + [f"{cap(s)} counted them: {', '.join(NUMS[1:tot])}, {NUMS[tot]}."] * (2 <= tot <= 6),
        [f"Today is {d}.", f"Yesterday was {nxt(d, -1)}.", f"Tomorrow will be {nxt(d)}.",
         f"The day after {nxt(d)} is {nxt(d, 2)}."]
        + [f"There are seven days in a week: {', '.join(DAYS[:-1])} and Sunday."] * (rng.random() < 0.3)
        + [f"Today {n} goes to the market in {t}."] * (d == p["mday"]),
        animals,
        [f"{rng.choice(TIMES)}, {n} and {pet} went to the {rng.choice(PLACES)}.",
         f"They saw {an(rng.choice(ADJS) + ' ' + wild)} near {rng.choice(SPOTS)}.", f"The {wild} looked hungry.",
         f"{n} gave it some {wild_food}.", f"The {wild} ate the {wild_food} and was happy.",
         f"Then {n} and {pet} walked home."],
        [f"{rng.choice(TIMES)}, {n} lost {ps} {p['fav']} {item} in the {rng.choice(PLACES)}.",
         f"{cap(s)} looked everywhere, but {s} could not find it.", f"{q['name']} helped {o} look.",
         f"At last, {pet} found the {item} near {rng.choice(SPOTS)}.", f'"Thank you, {pet}!" said {n}.'],
        [f"{cap(x)} {v} {c}." for x, v, c in rng.sample(COLOUR_FACTS, rng.randint(2, 4))]
        + [f"{q['name']}'s {q['pet']}, {q['pet_name']}, is {q['pet_colour']}."],
        [f"{n} was {f1}, so {s} {a1}.", f"After that, {s} felt better.", f"Later, {n} was {f2}.",
         f"Because {s} was {f2}, {s} {a2}."],
        [f"{n} lives in {t} and {q['name']} lives in {q['town']}.", f"On {d}, {n} visited {q['name']}.",
         f"{n} brought {NUMS[rng.randint(2, 6)]} {pl} as a gift.",
         f"{q['name']}'s {q['pet']}, {q['pet_name']}, sat by the window.",
         "They talked about their pets and had a nice time."][: rng.randint(3, 5)],
    ]


def story(rng: random.Random) -> dict:
    """One to three blocks about one person; a block that would pass 12 sentences is skipped."""
    sents: list[str] = []
    for part in rng.sample(blocks(rng, rng.choice(PEOPLE)), rng.choice([1, 2, 2, 2, 3])):
        if len(sents) + len(part) <= 12:
            sents += part
    return {"text": " ".join(sents)}


# ---- chat topics: each returns one (question, answer) pair; answers follow fixed rules ----
def q_arith(rng):
    a, b, op = rng.randint(0, 12), rng.randint(0, 12), rng.choice(["plus", "minus", "times"])
    if op == "minus" and b > a:
        a, b = b, a
    r, sym = {"plus": (a + b, "+"), "minus": (a - b, "-"), "times": (a * b, "x")}[op]
    q = rng.choice([f"What is {a} {op} {b}?", f"What is {a} {sym} {b}?", f"Can you tell me what {a} {op} {b} is?"])
    return q, f"{a} {op} {b} is {r}."


def q_days(rng):
    d, k = rng.choice(DAYS), rng.randint(2, 6)
    return rng.choice([
        (f"What day comes after {d}?", f"The day after {d} is {nxt(d)}."),
        (f"What day comes before {d}?", f"The day before {d} is {nxt(d, -1)}."),
        (f"If today is {d}, what day is tomorrow?", f"If today is {d}, tomorrow is {nxt(d)}."),
        (f"If today is {d}, what day was yesterday?", f"If today is {d}, yesterday was {nxt(d, -1)}."),
        (f"What day is {k} days after {d}?", f"{cap(NUMS[k])} days after {d} is {nxt(d, k)}."),
        ("How many days are in a week?", "There are seven days in a week.")])


def q_colour(rng):
    if rng.random() < 0.6:
        t, v, c = rng.choice(COLOUR_FACTS)
        return f"What colour {v} {t}?", f"{cap(t)} {v} {c}."
    p = rng.choice(PEOPLE)
    n, pet = p["name"], p["pet_name"]
    return rng.choice([(f"What colour is {n}'s {p['pet']}?", f"{n}'s {p['pet']}, {pet}, is {p['pet_colour']}."),
                       (f"What colour is {pet}?", f"{pet} is {p['pet_colour']}."),
                       (f"What is {n}'s favourite colour?", f"{n}'s favourite colour is {p['fav']}.")])


def q_letters(rng):
    w = rng.choice(WORDS)
    if rng.random() < 0.5:
        return f"How many letters are in the word {w}?", f"The word {w} has {len(w)} letters."
    ch = rng.choice(w)
    k = w.count(ch)
    return (f"How many times does the letter {ch} appear in the word {w}?",
            f"The letter {ch} appears {'once' if k == 1 else f'{k} times'} in the word {w}.")


def q_world(rng):
    p, a, w = rng.choice(PEOPLE), rng.choice(list(ANIMALS)), rng.choice(list(WEATHER))
    n, t, (sound, food, can) = p["name"], p["town"], ANIMALS[a]
    names = " and ".join(q["name"] for q in PEOPLE if q["town"] == t)
    return rng.choice([
        (f"Where does {n} live?", f"{n} lives in {t}."),
        (f"What is {n}'s job?", f"{n} is {an(p['job'])}. Every day, {PRON[p['sex']][0]} {p['does']}."),
        (f"What pet does {n} have?", f"{n} has {an(p['pet_colour'] + ' ' + p['pet'])} named {p['pet_name']}."),
        (f"When does {n} go to the market?", f"{n} goes to the market every {p['mday']}."),
        (f"Who lives in {t}?", f"{names} live in {t}."),
        (f"Where is {t}?", f"{t} is a small town {TOWNS[t][0]}."),
        (f"What does {an(a)} like to eat?", f"{cap(an(a))} likes to eat {food}."),
        (f"What can {an(a)} do?", f"{cap(an(a))} can {can}."),
        (f"What sound does {an(a)} make?", f"{cap(an(a))} says {sound}." if sound else f"{cap(an(a))} is very quiet."),
        (f"What should I do if it is {w}?", f"If it is {w}, you should {WEATHER[w][2]}.")])


GREETINGS = [("Hello!", "Hello! How can I help you today?"), ("Hi there.", "Hi! What would you like to know?"),
             ("Good morning!", "Good morning! How can I help you today?"),
             ("How are you?", "I am well, thank you. How can I help you?")]
SYSTEMS = ["You are a helpful assistant.", "You are a friendly assistant. Answer in one or two short sentences.",
           "You are a kind helper who knows the towns of Millbrook, Oakridge and Riverton.",
           "You answer questions about numbers, days, colours and words.", "Be helpful and brief."]
TOPICS = [q_arith, q_arith, q_days, q_colour, q_letters, q_world, q_world]


def conversation(rng: random.Random) -> dict:
    """Optional system message (~30%), then 1 exchange (~75%) or 2-3 distinct ones, ending with the assistant."""
    msgs = [{"role": "system", "content": rng.choice(SYSTEMS)}] if rng.random() < 0.3 else []
    turns = rng.choice([2, 3]) if rng.random() < 0.25 else 1
    pairs: list[tuple[str, str]] = []
    while len(pairs) < turns:
        pair = rng.choice(TOPICS)(rng)
        if pair[0] not in (q for q, _ in pairs):
            pairs.append(pair)
    if rng.random() < (0.3 if turns > 1 else 0.05):
        pairs[0] = rng.choice(GREETINGS)
    if turns == 3 and rng.random() < 0.4:
        pairs[-1] = ("Thank you!", "You're welcome!")
    for q, a in pairs:
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return {"messages": msgs}


def json_lines(make, seed: int, *, count: int = 0, max_bytes: int = 0, exclude=frozenset()) -> list[str]:
    """JSON lines of make(rng) until there are count of them or max_bytes bytes; lines in exclude are skipped."""
    rng, lines, size = random.Random(seed), [], 0
    while len(lines) < count or size < max_bytes:
        line = json.dumps(make(rng), ensure_ascii=True)
        if line not in exclude:
            lines.append(line)
            size += len(line) + 1
    return lines


def write(name: str, lines: list[str]) -> None:
    path = OUT_DIR / name
    with path.open("w", encoding="ascii", newline="\n") as f:
        f.write("".join(line + "\n" for line in lines))
    print(f"{path}: {path.stat().st_size} bytes, {len(lines)} lines")


def main() -> None:
    """Train sets first; each eval set uses its own seed and leaves out exact copies of train rows."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    train = json_lines(story, 1, max_bytes=400_000)
    write("stories.jsonl", train)
    write("stories_eval.jsonl", json_lines(story, 2, max_bytes=25_000, exclude=set(train)))
    train = json_lines(conversation, 3, count=1200)
    write("chat.jsonl", train)
    write("chat_eval.jsonl", json_lines(conversation, 4, count=60, exclude=set(train)))


if __name__ == "__main__":
    main()

"""The value codecs: JsonSerializer (the default), PickleSerializer and EncryptedSerializer."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import math
import os
import subprocess
import sys
import textwrap
import uuid
import zoneinfo
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiny_tasks import serde
from tiny_tasks.errors import SerializationError
from tiny_tasks.serde import (
    EncryptedSerializer,
    JsonSerializer,
    PickleSerializer,
    Serializer,
    default_serializer,
    generate_key,
)

MODULE = __name__.encode()
PARIS = zoneinfo.ZoneInfo("Europe/Paris")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Permission(enum.Flag):
    READ = 1
    WRITE = 2


@dataclass(frozen=True)
class Point:
    x: int
    y: int


@dataclass
class Order:
    id: uuid.UUID
    points: list[Point]
    color: Color
    placed_at: datetime
    tags: frozenset[str] = frozenset()
    total: Decimal = Decimal("0")
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Counter:
    start: int
    doubled: int = field(init=False)

    def __post_init__(self) -> None:
        self.doubled = self.start * 2


class Money:
    """A user type that is not a dataclass: stored through a registered codec."""

    def __init__(self, cents: int, currency: str) -> None:
        self.cents = cents
        self.currency = currency

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and (self.cents, self.currency) == (
            other.cents,
            other.currency,
        )

    def __hash__(self) -> int:
        return hash((self.cents, self.currency))


class Mars(tzinfo):
    """A time zone class tiny-tasks does not know."""

    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(hours=1)

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)

    def tzname(self, dt: datetime | None) -> str:
        return "MARS"


class Item(pydantic.BaseModel):
    name: str
    price: Decimal
    made_at: datetime | None = None


class Cart(pydantic.BaseModel):
    items: list[Item]
    coupon: tuple[str, int] | None = None


class Sizes(pydantic.RootModel[list[int]]):
    pass


class Loose(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")

    name: str


def money_serializer() -> JsonSerializer:
    serializer = JsonSerializer()
    serializer.register(
        Money,
        name="shop.Money",
        encode=lambda money: [money.cents, money.currency],
        decode=lambda stored: Money(*stored),
    )
    return serializer


def round_trip(value: Any, serializer: Serializer | None = None) -> Any:
    serializer = serializer or JsonSerializer()
    return serializer.loads(serializer.dumps(value))


def assert_same(actual: Any, expected: Any) -> None:
    """Equal, and of the same type all the way down (a tuple is still a tuple)."""
    assert type(actual) is type(expected), (actual, expected)
    if isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(actual)
    elif isinstance(expected, Decimal):
        assert str(actual) == str(expected)
    elif isinstance(expected, list | tuple):
        assert len(actual) == len(expected)
        for actual_item, expected_item in zip(actual, expected, strict=True):
            assert_same(actual_item, expected_item)
    elif isinstance(expected, dict):
        assert [shape(key) for key in actual] == [shape(key) for key in expected]
        for (actual_key, actual_item), (expected_key, expected_item) in zip(
            actual.items(), expected.items(), strict=True
        ):
            assert_same(actual_key, expected_key)
            assert_same(actual_item, expected_item)
    elif isinstance(expected, set | frozenset):
        assert shape(actual) == shape(expected)
    elif isinstance(expected, datetime | time):
        assert actual.replace(tzinfo=None) == expected.replace(tzinfo=None)
        assert actual.tzinfo == expected.tzinfo
        assert actual.tzname() == expected.tzname()
        assert actual.fold == expected.fold
    else:
        assert actual == expected


def shape(value: Any) -> str:
    """A hashable value's repr with types shown and set items in a fixed order."""
    if isinstance(value, set | frozenset):
        return f"{type(value).__name__}{{{', '.join(sorted(map(shape, value)))}}}"
    if isinstance(value, tuple):
        return f"({', '.join(map(shape, value))})"
    return f"{type(value).__name__}:{value!r}"


# JsonSerializer: what comes back ------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "hello",
        "",
        "naïve ☃ \U0001f600",
        0,
        -17,
        2**64,
        pytest.param(10**5000, id="wide-int"),
        pytest.param(-(10**5000), id="wide-negative-int"),
        1.5,
        -0.0,
        1e308,
        math.inf,
        -math.inf,
        True,
        False,
        None,
        [],
        {},
        [1, "two", 3.0, None, [True]],
        {"a": 1, "b": {"c": [1, 2]}},
    ],
)
def test_json_values_round_trip_as_themselves(value: Any) -> None:
    assert_same(round_trip(value), value)


def test_nan_round_trips() -> None:
    assert math.isnan(round_trip(math.nan))


def test_str_with_a_lone_surrogate_round_trips() -> None:
    assert round_trip("a\ud800b") == "a\ud800b"


def test_output_is_compact_json() -> None:
    serializer = JsonSerializer()

    assert serializer.dumps({"a": [1, 2.5, None, True], "b": "x"}) == (
        b'{"a":[1,2.5,null,true],"b":"x"}'
    )
    assert serializer.dumps("hello") == b'"hello"'
    assert serializer.dumps("☃") == '"☃"'.encode()


def test_other_types_are_written_as_tagged_objects() -> None:
    serializer = JsonSerializer()

    assert serializer.dumps((1, 2)) == b'{"$":"tuple","v":[1,2]}'
    assert serializer.dumps(b"\x00\xff") == b'{"$":"bytes","v":"AP8="}'
    assert serializer.dumps(math.inf) == b'{"$":"float","v":"inf"}'
    assert serializer.dumps({1: "a"}) == b'{"$":"dict","v":[[1,"a"]]}'


def test_tuples_sets_and_frozensets_keep_their_types() -> None:
    value = {"pair": (1, (2, 3)), "tags": {"a", "b"}, "frozen": frozenset({1, 2}), "empty": ()}

    loaded = round_trip(value)

    assert_same(loaded, value)
    assert type(loaded["pair"]) is tuple
    assert type(loaded["pair"][1]) is tuple
    assert type(loaded["tags"]) is set
    assert type(loaded["frozen"]) is frozenset


def test_equal_sets_encode_to_equal_bytes_whatever_their_order() -> None:
    serializer = JsonSerializer()
    words = [f"word{n}" for n in range(50)]

    forwards = serializer.dumps({"tags": set(words), "frozen": frozenset(words)})
    backwards = serializer.dumps({"tags": set(reversed(words)), "frozen": frozenset(words[::-1])})

    assert forwards == backwards
    assert serializer.dumps({3, 1, 2}) == b'{"$":"set","v":[1,2,3]}'


def test_set_order_does_not_depend_on_string_hashing() -> None:
    script = "from tiny_tasks.serde import JsonSerializer; print(JsonSerializer().dumps(%r))"
    value = {frozenset({"a", "b", "c"}), "d", "e", ("f", "g")}

    outputs = {
        subprocess.run(
            [sys.executable, "-c", script % (value,)],
            check=True,
            capture_output=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2", "3")
    }

    assert len(outputs) == 1


def test_dicts_with_keys_that_are_not_str_keep_their_keys() -> None:
    value = {1: "one", (2, 3): "pair", None: "none", Color.RED: "enum", "4": "str"}

    assert_same(round_trip(value), value)


@pytest.mark.parametrize(
    "value",
    [
        {"$": "tuple", "v": [1, 2]},
        {"$": 1},
        {"v": 1},
        {"outer": {"$": "enum", "v": ["os:system", 1]}},
        [{"$": "bytes", "v": "AA=="}],
    ],
)
def test_dicts_that_look_like_tags_stay_dicts(value: Any) -> None:
    assert_same(round_trip(value), value)


def test_bytes_and_bytearray_keep_their_types() -> None:
    assert_same(round_trip(b"\x00\x01\xff"), b"\x00\x01\xff")
    assert_same(round_trip(bytearray(b"abc")), bytearray(b"abc"))


@pytest.mark.parametrize(
    "value",
    [
        datetime(2024, 5, 1, 12, 30, 15, 123456),
        datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
        datetime(2024, 5, 1, 12, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(2024, 5, 1, 12, 30, tzinfo=timezone(timedelta(hours=-3), "BRT")),
        datetime(2024, 5, 1, 12, 30, tzinfo=PARIS),
        datetime(2024, 11, 3, 1, 30, tzinfo=NEW_YORK, fold=1),
        date(2024, 2, 29),
        time(23, 59, 59, 999999),
        time(8, 0, tzinfo=timezone(timedelta(hours=-8))),
        timedelta(days=-3, seconds=5, microseconds=7),
    ],
)
def test_dates_and_times_round_trip_exactly(value: Any) -> None:
    assert_same(round_trip(value), value)


def test_aware_datetimes_keep_their_time_zone() -> None:
    india = timezone(timedelta(hours=5, minutes=30))

    fixed = round_trip(datetime(2024, 5, 1, 12, 30, tzinfo=india))
    utc = round_trip(datetime(2024, 5, 1, 12, 30, tzinfo=UTC))
    paris = round_trip(datetime(2024, 5, 1, 12, 30, tzinfo=PARIS))
    ambiguous = round_trip(datetime(2024, 11, 3, 1, 30, tzinfo=NEW_YORK, fold=1))

    assert fixed.utcoffset() == timedelta(hours=5, minutes=30)
    assert fixed.tzinfo == india
    assert utc.tzinfo is UTC
    assert paris.tzinfo is PARIS
    assert ambiguous.fold == 1
    assert ambiguous.utcoffset() == timedelta(hours=-5)


def test_uuid_and_decimal_round_trip() -> None:
    value = [uuid.UUID("12345678-1234-5678-1234-567812345678"), Decimal("-0.00")]

    assert_same(round_trip(value), value)
    assert_same(round_trip(Decimal("1.50E+7")), Decimal("1.50E+7"))
    assert round_trip(Decimal("NaN")).is_nan()


def test_enum_members_come_back_as_the_same_member() -> None:
    loaded = round_trip([Color.RED, Priority.HIGH, Permission.READ | Permission.WRITE])

    assert loaded[0] is Color.RED
    assert loaded[1] is Priority.HIGH
    assert loaded[2] == Permission.READ | Permission.WRITE
    assert type(loaded[2]) is Permission


def test_dataclasses_round_trip_nested() -> None:
    order = Order(
        id=uuid.UUID(int=7),
        points=[Point(1, 2), Point(3, 4)],
        color=Color.GREEN,
        placed_at=datetime(2024, 5, 1, tzinfo=UTC),
        tags=frozenset({"gift"}),
        total=Decimal("12.50"),
        notes={"by": ("phone", 2)},
    )

    loaded = round_trip(order)

    assert loaded == order
    assert type(loaded.points[0]) is Point
    assert loaded.color is Color.GREEN
    assert type(loaded.notes["by"]) is tuple


def test_dataclass_fields_not_in_init_are_restored() -> None:
    counter = Counter(4)
    counter.doubled = 99

    loaded = round_trip(counter)

    assert (loaded.start, loaded.doubled) == (4, 99)


def test_pydantic_models_round_trip() -> None:
    cart = Cart(
        items=[Item(name="pen", price=Decimal("1.20"), made_at=datetime(2024, 1, 1, tzinfo=PARIS))],
        coupon=("SPRING", 10),
    )

    loaded = round_trip(cart)

    assert loaded == cart
    assert type(loaded.items[0]) is Item
    assert loaded.items[0].made_at is not None
    assert loaded.items[0].made_at.tzinfo is PARIS
    assert loaded.coupon == ("SPRING", 10)
    assert_same(round_trip(Sizes([1, 2])), Sizes([1, 2]))


def test_pydantic_extra_fields_round_trip_even_when_they_look_like_tags() -> None:
    loose = Loose.model_validate({"name": "x", "$": ("tuple", 1), "v": {"$": "set"}})

    loaded = round_trip(loose)

    assert loaded == loose
    assert loaded.model_extra == {"$": ("tuple", 1), "v": {"$": "set"}}


def test_registered_types_round_trip_through_their_codec() -> None:
    serializer = money_serializer()
    value = {"price": Money(1250, "EUR"), "history": (Money(1, "EUR"),)}

    assert serializer.dumps(Money(5, "EUR")) == (b'{"$":"custom","v":["shop.Money",[5,"EUR"]]}')
    assert round_trip(value, serializer) == value


def test_a_dataclass_registered_under_a_name_is_stored_under_that_name() -> None:
    serializer = JsonSerializer()
    serializer.register(Point, name="geometry.Point")

    data = serializer.dumps(Point(1, 2))

    assert data == b'{"$":"dataclass","v":["geometry.Point",{"x":1,"y":2}]}'
    assert serializer.loads(data) == Point(1, 2)


def test_a_class_defined_in_a_function_must_be_registered() -> None:
    @dataclass
    class Local:
        x: int

    with pytest.raises(SerializationError, match=r"cannot be found again as '.*Local'"):
        JsonSerializer().dumps(Local(1))

    serializer = JsonSerializer()
    serializer.register(Local, name="tests.Local")
    assert round_trip(Local(1), serializer) == Local(1)


def test_register_refuses_what_it_cannot_use() -> None:
    serializer = JsonSerializer()

    with pytest.raises(ValueError, match="int is stored natively"):
        serializer.register(int, encode=str, decode=int)
    with pytest.raises(TypeError, match="needs both encode= and decode="):
        serializer.register(Money, encode=lambda money: money.cents)
    with pytest.raises(TypeError, match="is not an Enum, dataclass or Pydantic model"):
        serializer.register(Money)
    serializer.register(Point, name="shared")
    with pytest.raises(ValueError, match="'shared' is already registered for"):
        serializer.register(Color, name="shared")


def test_repr_lists_registered_names() -> None:
    assert repr(money_serializer()) == "JsonSerializer(registered=['shop.Money'])"


# JsonSerializer: what it refuses to encode ---------------------------------------


def test_an_unsupported_value_is_named_with_its_place() -> None:
    with pytest.raises(SerializationError) as raised:
        JsonSerializer().dumps({"items": [1, 2, Money(1, "EUR")]})

    assert str(raised.value).startswith(
        f"cannot serialise value['items'][2] of type {__name__}.Money: it is not a supported type"
    )
    assert "serializer.register(Money, encode=..., decode=...)" in str(raised.value)


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (object(), "value of type object"),
        ((1, object()), "value[1] of type object"),
        ({"a": {"b": (0, {1: object()})}}, "value['a']['b'][1][1] of type object"),
        ({"a": {object()}}, "value['a'][<set item>] of type object"),
        ({Money(1, "EUR"): 1}, f"value[<key>] of type {__name__}.Money"),
        (Point(1, object()), "value.y of type object"),  # type: ignore[arg-type]
        ([datetime(2024, 1, 1, tzinfo=Mars())], f"value[0].tzinfo of type {__name__}.Mars"),
    ],
)
def test_error_messages_name_type_and_path(value: Any, where: str) -> None:
    with pytest.raises(SerializationError) as raised:
        JsonSerializer().dumps(value)

    assert str(raised.value).startswith(f"cannot serialise {where}: ")


def test_subclasses_of_builtin_types_are_not_silently_flattened() -> None:
    class Tagged(str):
        pass

    with pytest.raises(SerializationError, match=r"value\[0\] of type .*Tagged"):
        JsonSerializer().dumps([Tagged("x")])


def test_a_reference_cycle_is_an_error() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)

    with pytest.raises(SerializationError, match="contains itself"):
        JsonSerializer().dumps(cycle)


def test_an_encode_function_that_fails_is_reported() -> None:
    serializer = JsonSerializer()
    serializer.register(Money, encode=lambda money: 1 / 0, decode=lambda stored: stored)

    with pytest.raises(SerializationError, match=r"value\[0\] of type .*Money: its registered"):
        serializer.dumps([Money(1, "EUR")])


# JsonSerializer: what it refuses to load -----------------------------------------


def test_a_type_that_is_not_of_the_stored_kind_is_refused() -> None:
    data = b'{"$":"enum","v":["os:system",0]}'

    with pytest.raises(SerializationError) as raised:
        JsonSerializer().loads(data)

    assert "'os:system'" in str(raised.value)
    assert "not an Enum class" in str(raised.value)


def test_a_module_named_in_the_data_is_never_imported() -> None:
    assert "antigravity" not in sys.modules
    data = b'{"$":"dataclass","v":["antigravity:Fly",{}]}'

    with pytest.raises(SerializationError, match="module 'antigravity' is not imported"):
        JsonSerializer().loads(data)

    assert "antigravity" not in sys.modules


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"$":"dataclass","v":["subprocess:Popen",{"args":"true"}]}', "not a dataclass"),
        (b'{"$":"pydantic","v":["collections:OrderedDict",{}]}', "not a Pydantic model"),
        (b'{"$":"enum","v":["%s:NoSuchEnum","red"]}' % MODULE, "has no 'NoSuchEnum'"),
        (b'{"$":"enum","v":["%s:Color","blue"]}' % MODULE, "'blue' is not a valid Color"),
        (b'{"$":"custom","v":["shop.Money",[1,"EUR"]]}', "no type is registered"),
        (b'{"$":"dataclass","v":["%s:Point",{"x":1,"z":2}]}' % MODULE, "field(s) 'z'"),
    ],
)
def test_stored_types_that_cannot_be_loaded_are_explained(data: bytes, message: str) -> None:
    with pytest.raises(SerializationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        JsonSerializer().loads(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"[1,",
        b"\xff\xfe\x00",
        b"NaN",
        b"nul",
        b"1 2",
        b'{"$":"tuple"}',
        b'{"$":"tuple","v":5}',
        b'{"$":"tuple","v":[],"x":1}',
        b'{"$":"nope","v":1}',
        b'{"$":["tuple"],"v":1}',
        b'{"$":"bytes","v":"not base64!"}',
        b'{"$":"int","v":"zz"}',
        b'{"$":"float","v":"1.5"}',
        b'{"$":"datetime","v":["yesterday",null,0]}',
        b'{"$":"datetime","v":["2024-01-01T00:00:00",5,0]}',
        b'{"$":"datetime","v":["2024-01-01T00:00:00+01:00",null,0]}',
        b'{"$":"timedelta","v":[1e400,0,0]}',
        b'{"$":"timedelta","v":[999999999999,0,0]}',
        b'{"$":"zoneinfo","v":"../../etc/passwd"}',
        b'{"$":"zoneinfo","v":"Mars/Olympus"}',
        b'{"$":"dict","v":[[[1],2]]}',
        b'{"$":"set","v":[[1]]}',
        b'{"$":"enum","v":["nocolon",1]}',
        b"[" * 100_000 + b"]" * 100_000,
        b"9" * 10_000,
    ],
)
def test_bad_bytes_raise_serialization_error(data: bytes) -> None:
    with pytest.raises(SerializationError):
        JsonSerializer().loads(data)


def test_loads_wants_bytes() -> None:
    with pytest.raises(SerializationError, match="expected bytes"):
        JsonSerializer().loads('"text"')  # type: ignore[arg-type]


def test_loading_does_not_import_pydantic_or_cryptography() -> None:
    script = textwrap.dedent(
        """
        import sys
        from dataclasses import dataclass
        from tiny_tasks.serde import JsonSerializer

        @dataclass
        class Point:
            x: int

        serializer = JsonSerializer()
        assert serializer.loads(serializer.dumps([Point(1), {"a": (1, 2)}])) == [
            Point(1), {"a": (1, 2)}
        ]
        assert "pydantic" not in sys.modules, "pydantic was imported"
        assert "cryptography" not in sys.modules, "cryptography was imported"
        """
    )

    subprocess.run([sys.executable, "-c", script], check=True)


# JsonSerializer: properties ------------------------------------------------------

texts = st.text(st.characters(codec=None), max_size=8) | st.sampled_from(["$", "v", ""])
fixed_offsets = st.builds(
    timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**7000), max_value=2**7000),
    st.floats(),
    texts,
    st.binary(max_size=8),
    st.binary(max_size=8).map(bytearray),
    st.datetimes(timezones=st.none() | st.timezones() | fixed_offsets),
    st.dates(),
    st.times(timezones=st.none() | fixed_offsets),
    st.timedeltas(),
    st.uuids(),
    st.decimals(),
    st.sampled_from([*Color, *Priority, Permission.READ | Permission.WRITE]),
    st.builds(Point, st.integers(), st.integers()),
)
hashables = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), texts, st.binary(max_size=4)),
    lambda inner: st.lists(inner, max_size=3).map(tuple) | st.frozensets(inner, max_size=3),
    max_leaves=6,
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(texts, inner, max_size=4),
        st.dictionaries(hashables, inner, max_size=4),
        st.sets(hashables, max_size=4),
        st.frozensets(hashables, max_size=4),
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_any_supported_value_round_trips_exactly(value: Any) -> None:
    assert_same(round_trip(value), value)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_load_or_raise_serialization_error(data: bytes) -> None:
    with contextlib.suppress(SerializationError):
        JsonSerializer().loads(data)


@settings(max_examples=100, deadline=None)
@given(values, st.data())
def test_damaged_encodings_load_or_raise_serialization_error(value: Any, draw: Any) -> None:
    serializer = JsonSerializer()
    data = serializer.dumps(value)
    cut = draw.draw(st.integers(min_value=0, max_value=len(data) - 1))
    at = draw.draw(st.integers(min_value=0, max_value=len(data) - 1))
    flipped = data[:at] + bytes([data[at] ^ draw.draw(st.integers(1, 255))]) + data[at + 1 :]

    for damaged in (data[:cut], flipped):
        with contextlib.suppress(SerializationError):
            serializer.loads(damaged)


# PickleSerializer ----------------------------------------------------------------


def test_pickle_is_opt_in_and_round_trips_any_picklable_value() -> None:
    value = {"point": Point(1, 2), "money": Money(5, "EUR"), "pair": (1, 2)}

    assert_same(round_trip(value, PickleSerializer()), value)
    assert "trusted store" in (PickleSerializer.__doc__ or "")
    assert type(default_serializer()) is JsonSerializer


def test_pickle_errors_are_serialization_errors() -> None:
    with pytest.raises(SerializationError, match="cannot pickle a value of type function"):
        PickleSerializer().dumps(lambda: None)
    with pytest.raises(SerializationError, match="cannot unpickle"):
        PickleSerializer().loads(b"not a pickle")


# EncryptedSerializer -------------------------------------------------------------


def test_encrypted_values_round_trip_and_hide_the_plaintext() -> None:
    serializer = EncryptedSerializer(JsonSerializer(), generate_key())
    value = {"secret": "hunter2", "when": date(2024, 1, 1), "pair": (1, 2)}

    first, second = serializer.dumps(value), serializer.dumps(value)

    assert_same(serializer.loads(first), value)
    assert first != second
    assert b"hunter2" not in first


def test_encryption_wraps_any_serializer() -> None:
    serializer = EncryptedSerializer(PickleSerializer(), generate_key(16))

    assert round_trip(Money(1, "EUR"), serializer) == Money(1, "EUR")
    assert isinstance(serializer, Serializer)
    assert repr(serializer) == "EncryptedSerializer(PickleSerializer(protocol=5), keys=1)"


def test_any_changed_byte_fails_authentication() -> None:
    serializer = EncryptedSerializer(JsonSerializer(), generate_key())
    data = serializer.dumps([1, 2, 3])

    for at in range(len(data)):
        damaged = data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]
        with pytest.raises(SerializationError, match="could not be authenticated"):
            serializer.loads(damaged)
    with pytest.raises(SerializationError, match="could not be authenticated"):
        serializer.loads(data[:-1])


def test_a_value_written_with_another_key_fails_authentication() -> None:
    data = EncryptedSerializer(JsonSerializer(), generate_key()).dumps("x")

    with pytest.raises(SerializationError, match="could not be authenticated"):
        EncryptedSerializer(JsonSerializer(), generate_key()).loads(data)


def test_key_rotation_reads_old_values_and_writes_with_the_first_key() -> None:
    old_key, new_key = generate_key(), generate_key()
    before = EncryptedSerializer(JsonSerializer(), old_key)
    after = EncryptedSerializer(JsonSerializer(), [new_key, old_key])
    stored_before = before.dumps({"total": Decimal("9.99")})

    assert_same(after.loads(stored_before), {"total": Decimal("9.99")})

    stored_after = after.dumps("rotated")
    assert EncryptedSerializer(JsonSerializer(), new_key).loads(stored_after) == "rotated"
    with pytest.raises(SerializationError, match="could not be authenticated"):
        before.loads(stored_after)


@pytest.mark.parametrize("key", [b"", b"short", b"x" * 31, [generate_key(), b"x" * 33]])
def test_keys_must_be_16_24_or_32_bytes(key: Any) -> None:
    with pytest.raises(ValueError, match="AES-GCM keys must be 16, 24 or 32 bytes"):
        EncryptedSerializer(JsonSerializer(), key)


def test_keys_are_required_and_must_be_bytes() -> None:
    with pytest.raises(ValueError, match="at least one key"):
        EncryptedSerializer(JsonSerializer(), [])
    with pytest.raises(TypeError, match="key 0 is a str, not bytes"):
        EncryptedSerializer(JsonSerializer(), ["k" * 32])  # type: ignore[list-item]


def test_generate_key_makes_random_keys_of_the_given_size() -> None:
    assert [len(generate_key(size)) for size in (16, 24, 32)] == [16, 24, 32]
    assert len(generate_key()) == 32
    assert generate_key() != generate_key()
    with pytest.raises(ValueError, match="16, 24 or 32 bytes long, not 20"):
        generate_key(20)


def test_encryption_without_cryptography_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)

    with pytest.raises(ImportError, match=r"pip install 'tiny-tasks\[encryption\]'"):
        EncryptedSerializer(JsonSerializer(), generate_key())


# The module ----------------------------------------------------------------------


def test_every_serializer_meets_the_protocol() -> None:
    assert isinstance(JsonSerializer(), Serializer)
    assert isinstance(PickleSerializer(), Serializer)
    assert isinstance(default_serializer(), Serializer)


def test_all_is_sorted_and_public_names_are_documented() -> None:
    assert serde.__all__ == sorted(serde.__all__)
    for name in serde.__all__:
        assert getattr(serde, name).__doc__, name


def test_default_serializer_is_a_fresh_json_serializer() -> None:
    assert default_serializer() is not default_serializer()
    assert dataclasses.is_dataclass(round_trip(Point(1, 2), default_serializer()))


def test_loads_many_decodes_in_order_and_names_a_bad_item() -> None:
    serde = JsonSerializer()
    values = [{"k": "answer", "v": (1, 2)}, "text", [b"\x00", {3, 4}], None]
    assert serde.loads_many([serde.dumps(v) for v in values]) == values
    assert serde.loads_many([]) == []
    with pytest.raises(SerializationError, match="not valid"):
        serde.loads_many([serde.dumps(1), b"1,2", serde.dumps(3)])

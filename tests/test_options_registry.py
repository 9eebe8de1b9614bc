"""Options validation, the registry, plugins and entry points."""

import importlib.metadata
import textwrap
from dataclasses import dataclass

import pytest

import games
from games.options import GameOptions, OptionError, option
from games.registry import UnknownGameError


def test_unknown_option_suggests_the_right_name():
    with pytest.raises(OptionError, match=r"unknown option 'objectve'.*Did you mean 'objective'"):
        games.make("negotiation-v0", objectve="coop")


def test_bad_choice_names_the_allowed_values():
    with pytest.raises(OptionError, match=r"objective.*one of 'semi', 'coop', 'comp'; got 'cooperative'"):
        games.make("negotiation-v0", objective="cooperative")


def test_range_and_type_errors():
    with pytest.raises(OptionError, match="at least 2"):
        games.make("negotiation-v0", max_messages=1)
    with pytest.raises(OptionError, match="must be an integer; got 'many'"):
        games.make("negotiation-v0", max_messages="many")


def test_strings_from_the_command_line_are_coerced():
    env = games.make("negotiation-v0", max_messages="12", illegal_move_penalty="0.25")
    assert env.options.max_messages == 12 and env.options.illegal_move_penalty == 0.25


def test_bool_options():
    @dataclass(frozen=True)
    class Opts(GameOptions):
        flag: bool = option(False, "a flag")

    assert Opts(flag="yes").flag is True and Opts(flag="off").flag is False
    with pytest.raises(OptionError, match="boolean"):
        Opts(flag="maybe")


def test_describe_lists_help_and_constraints():
    info = {o.name: o for o in games.get_spec("negotiation-v0").cls.options_class.describe()}
    assert info["objective"].choices == ("semi", "coop", "comp") and "own" in info["objective"].help
    assert info["max_messages"].default == 50


def test_unknown_game_suggests():
    with pytest.raises(UnknownGameError, match="Did you mean 'negotiation-v0'"):
        games.make("negociation-v0")


def test_registry_lists_games_with_summaries():
    specs = {s.id: s for s in games.list_games()}
    assert "negotiation-v0" in specs
    assert specs["negotiation-v0"].summary.startswith("Deal or No Deal")


GUESS_GAME = textwrap.dedent('''
    """guess-test-v0: guess a number between 1 and 10.

    Roles: guesser. Observations: feedback. Moves: a number. End: right guess or 5 tries. Scores: 1 if right.
    """
    from dataclasses import dataclass
    import games

    @dataclass(frozen=True)
    class Opts(games.GameOptions):
        tries: int = games.option(5, "guesses allowed", min=1)

    @games.register
    class Guess(games.TextGame):
        game_id = "guess-test-v0"
        roles = ("guesser",)
        options_class = Opts

        def turn_limit(self):
            return self.options.tries

        def brief(self, role):
            return "Guess the secret number between 1 and 10. Answer with the number only."

        def setup(self):
            self.secret = int(self.np_random.integers(1, 11))
            self.tell("guesser", "Guess.")
            self.next_turn("guesser")

        def play(self, role, move):
            if not move.strip().isdigit():
                return self.reject("not a number")
            if int(move) == self.secret:
                return self.finish({"guesser": 1.0}, {"tries": len(self.moves())}, "Right.")
            self.tell("guesser", "higher" if int(move) < self.secret else "lower")
            self.next_turn("guesser")
''')


def test_load_plugin_file_registers_its_games(tmp_path):
    path = tmp_path / "guess_game.py"
    path.write_text(GUESS_GAME)
    assert games.load_plugin(path) == ["guess-test-v0"]
    env = games.make("guess-test-v0", tries=3)
    env.reset(seed=0)
    env.step("abc")
    assert not env.records[-1].legal
    assert games.get_spec("guess-test-v0").summary == "guess a number between 1 and 10."


def test_missing_plugin_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        games.load_plugin(tmp_path / "nope.py")


def test_entry_points_are_loaded(monkeypatch, tmp_path):
    module = tmp_path / "ep_game_pkg.py"
    module.write_text(GUESS_GAME.replace("guess-test-v0", "guess-ep-v0").replace("@games.register\n", ""))
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = importlib.metadata.EntryPoint(name="guess", value="ep_game_pkg:Guess", group="arena.games")
    monkeypatch.setattr(games.registry, "_entry_points_loaded", False)
    monkeypatch.setattr(games.registry.importlib.metadata, "entry_points",
                        lambda group: [ep] if group == "arena.games" else [])
    assert "guess-ep-v0" in [s.id for s in games.list_games()]
    assert games.get_spec("guess-ep-v0").origin == "entry point ep_game_pkg:Guess"


def test_registering_a_different_class_under_a_taken_id_is_refused():
    class Impostor(games.NegotiationGame):
        pass

    with pytest.raises(ValueError, match="already registered"):
        games.register(Impostor)

"""talk-test-v0: a two-turn game whose reward varies with any text, so training on a random model moves it.

Roles: speaker. Observations: a prompt. Moves: any text. End: after two turns.
Scores: the second turn's reward. Metrics: length of each turn.
"""

from dataclasses import dataclass

import games


@dataclass(frozen=True)
class TalkOptions(games.GameOptions):
    target: int = games.option(12, "the length (in characters) that earns the most", min=1)


class TalkGame(games.TextGame):
    game_id = "talk-test-v0"
    roles = ("speaker",)
    options_class = TalkOptions

    def turn_limit(self):
        return 4

    def brief(self, role):
        return "Say something, then say it again. Replies close to the target length score best."

    def setup(self):
        self.lengths = []
        self.tell("speaker", "Say something.")
        self.next_turn("speaker")

    def _reward(self, move):
        return max(0.0, 1 - abs(len(move) - self.options.target) / self.options.target)

    def play(self, role, move):
        self.lengths.append(len(move))
        reward = self._reward(move)
        if len(self.lengths) == 1:
            self.reward(role, reward)
            self.tell(role, "Say it again.")
            return self.next_turn(role)
        self.reward(role, reward)
        self.finish({"speaker": reward}, {"first_length": self.lengths[0], "second_length": self.lengths[1]},
                    "Done.", reward_scores=False)

    def at_turn_limit(self):
        self.finish({"speaker": 0.0}, {}, "Out of turns.", reward_scores=False)


class Echo(games.Player):
    def act(self, observation):
        return "hello there!"


TalkGame.scripted_player = Echo
games.register(TalkGame, replace=True)

"""The `ngf` command parses argv once: what was typed (`args.given`) comes from that one parse."""

import argparse

from ngf.cli import build_parser, main
from ngf.cli.parser import Parser, suppress_defaults


def test_argv_is_parsed_once_and_given_is_what_was_typed(monkeypatch, capsys):
    calls, results = [], []
    parse_args, parse_known_args = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args

    def counted_parse_args(self, *args, **kwargs):
        results.append(parse_args(self, *args, **kwargs))
        return results[-1]

    def counted_parse_known_args(self, *args, **kwargs):
        calls.append(self.prog)  # the subcommand's parser is "ngf run"
        return parse_known_args(self, *args, **kwargs)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", counted_parse_args)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", counted_parse_known_args)
    argv = ["--block-plugin", "ngf.plugins.dtp", "run", "--rule", "nope", "--lr", "1e-3", "--rule-opt", "beta=0.5",
            "--quiet"]
    assert main(argv) == 2  # parsed, then refused: unknown rule
    assert "unknown rule 'nope'" in capsys.readouterr().out
    assert len(results) == 1 and calls.count("ngf") == 1
    args = results[0]
    assert args.given == {"command", "global_block_plugin", "rule", "lr", "rule_opt", "quiet"}
    assert (args.rule, args.lr, args.rule_opt, args.quiet) == ("nope", 1e-3, ["beta=0.5"], True)
    assert args.global_block_plugin == ["ngf.plugins.dtp"]
    assert (args.epochs, args.plugin, args.overwrite, args.out, args.argv) == (5, [], False, None, argv)


def test_the_namespace_holds_every_option_and_given_only_the_typed_ones():
    args = build_parser().parse_args(["sweep", "--out", "o", "--lr", "0.001", "--grid", "lr=1"])
    assert args.given == {"command", "out", "lr", "grid"}  # typed with its default value: still given
    assert (args.out, args.lr, args.epochs, args.workers, args.rules, args.milestones) == ("o", 0.001, 5, 1, None, ())
    plot = build_parser().parse_args(["plot", "a", "b"])
    assert plot.given == {"command", "dirs"} and (plot.out, plot.title, plot.plugin) == ("curves.png", "", [])
    assert build_parser().parse_args(["rules"]).given == {"command"}


def test_append_options_never_share_their_default():
    parser = build_parser()
    first, second = parser.parse_args(["run"]), parser.parse_args(["run", "--log", "tensorboard"])
    first.log.append("wandb")
    assert second.log == ["tensorboard"] and parser.parse_args(["run"]).log == []


def test_help_shows_defaults_that_parsing_suppresses():
    parser = Parser(prog="demo")
    parser.add_argument("--size", type=int, default=3, help="size (default %(default)s)")
    suppress_defaults(parser)
    assert "size (default 3)" in parser.format_help()
    assert not hasattr(parser.parse_args([]), "size")  # a plain Parser leaves the filling to ngf's

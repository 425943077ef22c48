"""tools/wrap_long_lines.py: long notebook lines wrapped, the syntax tree unchanged, what it cannot wrap left alone."""
import ast
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("wrap_long_lines", ROOT / "tools" / "wrap_long_lines.py")
wll = importlib.util.module_from_spec(spec)
spec.loader.exec_module(wll)

CELL = '''def f(alpha, beta, gamma):
    "A docstring that is long enough to need wrapping because it goes on and on and on and on about what the function does."
    if alpha: raise ValueError(f"alpha must be falsy here, got {alpha!r}, and this message is long enough to need wrapping too")
    total = some_function_name(alpha, beta, gamma, keyword_one=1, keyword_two=2, keyword_three=3, keyword_four=4)  # a note
    pairs = {key: value for key, value in zip(["first", "second", "third"], [alpha, beta, gamma]) if value is not None and key}
    x = 1; y = 2; z = alpha_beta_gamma_delta_epsilon_zeta_eta_theta_iota + kappa_lambda_mu_nu_xi_omicron_pi_rho_sigma_tau
    return total, pairs, x, y, z
'''


def test_wraps_every_line_and_keeps_the_tree():
    new, left = wll.wrap_cell(CELL)
    assert left == [] and max(map(len, new.splitlines())) <= wll.LIMIT
    assert ast.dump(ast.parse(new)) == ast.dump(ast.parse(CELL))
    assert sum(len(l) > wll.LIMIT for l in CELL.splitlines()) == 5
    assert "    # a note\n    total = " in new               # the trailing comment moved above its line
    assert "\n             for key, value in zip(" in new   # a comprehension breaks before its `for`
    assert ast.get_docstring(ast.parse(new).body[0]) == ast.get_docstring(ast.parse(CELL).body[0])


def test_leaves_what_it_cannot_wrap():
    magic = "%time x = " + "1 + " * 40 + "1"
    assert wll.wrap_cell(magic) == (magic, [])                # IPython magics are not Python: untouched
    one_token = "x = " + "a" * 130
    assert wll.wrap_cell(one_token) == (one_token, [one_token])
    short = "y = 1  # fits"
    assert wll.wrap_cell(short) == (short, [])


SPLIT = '''def g(run_dir, step, have):
    if step not in have: raise DataError(f"{run_dir}: no checkpoint at step {step} (kept: "
                                         f"{have or 'none'}); train the "
                                         "seed run with keep_checkpoints=True and a checkpoint_every that "
                                         "divides {the} step")
    return ("a whole line that was wrapped on purpose and reads well as it stands, "
            "so it stays")
'''


def test_rejoins_a_message_split_mid_phrase():
    new = wll.rejoin_strings(SPLIT)
    assert ast.dump(ast.parse(new)) == ast.dump(ast.parse(SPLIT))
    lines = new.splitlines()
    assert len(lines) == len(SPLIT.splitlines()) - 1 and max(map(len, lines)) <= wll.LIMIT
    assert "(kept: {have or 'none'}); train " in lines[1]       # the short piece joined its neighbours
    assert '{the} step")' in new and '{{the}}' not in new         # a piece with no field stays a plain literal
    assert new.endswith('''well as it stands, "\n            "so it stays")\n''')   # no short piece: untouched
    assert wll.rejoin_strings(new) == new

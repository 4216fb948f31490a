from __future__ import annotations

import pytest

from breakglass.flows.language import templating


def _refs(text: str, condition: bool = False) -> set[str]:
    return {r.dotted() for r in templating.references(templating.parse(text, condition=condition))}


def test_references_are_found_through_attributes_items_and_filters() -> None:
    assert _refs("{{ inputs.a }} {{ steps['s'].outputs.block_number | string }} {{ alert.title|upper }}") == {
        "inputs.a", "steps.s.outputs.block_number", "alert.title"}


def test_loop_variables_are_not_references() -> None:
    assert _refs("{% for x in inputs.list %}{{ x.y }}{% endfor %}") == {"inputs.list"}


def test_single_expression_keeps_its_native_type() -> None:
    assert templating.render("{{ inputs.items }}", {"inputs": {"items": [1, 2]}}) == [1, 2]
    assert templating.render("n={{ inputs.n }}", {"inputs": {"n": 3}}) == "n=3"


def test_values_from_alerts_and_inputs_are_data_never_templates() -> None:
    context = {"inputs": {"label": "{{ 7 * 7 }}"}, "alert": {"title": "{{ inputs.label }} <!channel>"}}
    assert templating.render("{{ alert.title }}", context) == "{{ inputs.label }} <!channel>"
    assert templating.render("label: {{ inputs.label }}", context) == "label: {{ 7 * 7 }}"


def test_undefined_is_an_error_not_an_empty_string() -> None:
    with pytest.raises(templating.TemplateError, match="missing"):
        templating.render("{{ inputs.missing }}", {"inputs": {}})


def test_condition_must_be_a_real_boolean() -> None:
    assert templating.condition("inputs.flag", {"inputs": {"flag": False}}) is False
    assert templating.condition("{{ inputs.n > 2 }}", {"inputs": {"n": 3}}) is True
    with pytest.raises(templating.TemplateError, match="not true/false"):
        templating.condition("inputs.flag", {"inputs": {"flag": "False"}})


def test_missing_alert_says_why() -> None:
    with pytest.raises(templating.TemplateError, match="not started by an alert"):
        templating.render("{{ alert.title }}", {"alert": templating.NO_ALERT})


def test_sandbox_blocks_python_internals() -> None:
    with pytest.raises(templating.TemplateError):
        templating.render("{{ inputs.__class__.__mro__ }}", {"inputs": {}})


def test_a_missing_step_output_names_what_is_there_not_an_internal_class() -> None:
    context = {"inputs": {"chain": "ethereum"}, "alert": templating.NO_ALERT, "steps": {"pause-all": {"paused": True}}}
    with pytest.raises(templating.TemplateError) as missing_step:
        templating.render("{{ steps.snap.block }}", context)
    assert str(missing_step.value) == "cannot render '{{ steps.snap.block }}': no 'snap' here (there is: pause-all)"
    with pytest.raises(templating.TemplateError) as missing_input:
        templating.render("{{ inputs.attacker }}", context)
    assert "no 'attacker' here (there is: chain)" in str(missing_input.value)
    assert "Namespace" not in str(missing_step.value) + str(missing_input.value)

"""Presentation: what the compiler's results look like to a person.

    report.py         analyze's layer table (table, markdown, CSV) and its JSON
    bitops_report.py  the bit-operation report of `analyze --bitops`
    view.py           `archc view`: one offline HTML page (graph, blocks, layer table);
                      its assets are in _view/
    dot.py            `analyze --format dot`: the graph for Graphviz
    sweep.py          `archc sweep`: a parameter grid analysed, the Pareto front
    sweep_report.py   a sweep's table, CSV/JSON, trained runs attached, the Pareto plot
                      (matplotlib, imported only for --plot)

Everything here reads archc.compiler's results; nothing in archc.compiler imports it.
"""

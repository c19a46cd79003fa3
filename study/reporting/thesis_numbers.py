"""The thesis's reported numbers, embedded once, each tagged with the table it comes from.

Transcribed from the thesis text: Table 5.1 (Chapter 5) and Tables A.1-A.4 (Appendix A). Values
are as printed (4 decimals); a footnote asterisk is dropped. The thesis reports MRR@10 on MS MARCO
v1.1 dev and every other metric on TREC DL 2019 (Table 5.1's footnote); A.1's MRR@10 equals 5.1's,
so it is the dev set too.

The tables do not always agree with each other: the same model, optimizer, epoch and metric can
carry different values in Table 5.1 and in Appendix A (e.g. GTE + Lion, epoch 1, nDCG@10: 0.6785 in
Table 5.1, 0.6970 in Tables A.1 and A.4). Both are kept; `disagreements()` lists every such cell.

`THESIS_TABLES` also fixes each table's shape (its metrics, in its column order, and the role of
the evaluation set each metric is computed on), which the study's report reuses.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

# Evaluation-set roles: "test" = TREC DL 2019 (the study's first evaluation set), "dev" = MS MARCO
# dev (its second; the first where a study has only one).
TEST, DEV = "test", "dev"


@dataclass(frozen=True)
class TableShape:
    key: str  # file-name stem, e.g. "table_5_1"
    title: str  # the thesis's label, e.g. "Table 5.1"
    caption: str
    metrics: tuple[tuple[str, str], ...]  # (role, canonical metric name), in the thesis's column order


_CUTOFFS = (5, 10, 20, 100)

THESIS_TABLES: dict[str, TableShape] = {
    t.title: t
    for t in (
        TableShape(
            "table_5_1",
            "Table 5.1",
            "Main ranking metrics (the thesis: TREC DL 2019, MRR@10 on MS MARCO dev)",
            ((TEST, "nDCG@10"), (TEST, "AP"), (DEV, "RR@10"), (TEST, "R@10"), (TEST, "R-Prec"), (TEST, "P@10")),
        ),
        TableShape(
            "table_a_1",
            "Table A.1",
            "Primary ranking metrics",
            ((TEST, "AP"), (TEST, "nDCG@10"), (DEV, "RR@10"), (TEST, "P@10"), (TEST, "R-Prec")),
        ),
        TableShape("table_a_2", "Table A.2", "Precision at cutoffs", tuple((TEST, f"P@{k}") for k in _CUTOFFS)),
        TableShape("table_a_3", "Table A.3", "Recall at cutoffs", tuple((TEST, f"R@{k}") for k in _CUTOFFS)),
        TableShape("table_a_4", "Table A.4", "nDCG at cutoffs", tuple((TEST, f"nDCG@{k}") for k in _CUTOFFS)),
    )
}

# One line per row: model (the study's key: minilm = MiniLM-L12-H384, gte = GTE-multilingual-base,
# modernbert = ModernBERT-base), optimizer, epoch, then the values in the table's column order.
_ROWS: dict[str, str] = {
    "Table 5.1": """
minilm     adamw 1  0.7008  0.4814  0.5828  0.1712  0.4899  0.8047
minilm     adamw 2  0.7094  0.4891  0.5818  0.1715  0.5017  0.8093
minilm     adamw 3  0.7127  0.4908  0.5826  0.1706  0.4962  0.8023
minilm     lion  1  0.7031  0.4858  0.5890  0.1698  0.4904  0.8070
minilm     lion  2  0.6916  0.4755  0.5942  0.1724  0.5041  0.8116
minilm     lion  3  0.6808  0.4706  0.5988  0.1701  0.4923  0.8023
gte        adamw 1  0.7224  0.5005  0.5940  0.1733  0.4957  0.8140
gte        adamw 2  0.7203  0.4999  0.5942  0.1733  0.5067  0.8163
gte        adamw 3  0.6902  0.4899  0.5972  0.1730  0.5069  0.8140
gte        lion  1  0.6785  0.4754  0.5854  0.1684  0.4849  0.7953
gte        lion  2  0.6909  0.4921  0.5957  0.1721  0.5053  0.8140
gte        lion  3  0.6904  0.4912  0.5931  0.1719  0.5041  0.8093
modernbert adamw 1  0.7105  0.5066  0.5865  0.1678  0.5161  0.8163
modernbert adamw 2  0.6839  0.4893  0.5885  0.1634  0.4946  0.7814
modernbert adamw 3  0.6959  0.4971  0.5916  0.1623  0.5116  0.7860
modernbert lion  1  0.7142  0.5121  0.5834  0.1689  0.5148  0.8163
modernbert lion  2  0.7225  0.5115  0.5907  0.1732  0.5183  0.8209
modernbert lion  3  0.7051  0.5020  0.5988  0.1722  0.5102  0.8256
""",
    "Table A.1": """
gte        adamw 1  0.5005  0.7224  0.5940  0.8116  0.4964
gte        adamw 2  0.4999  0.7203  0.5942  0.8256  0.5018
gte        adamw 3  0.4899  0.6902  0.5972  0.8093  0.5017
gte        lion  1  0.4794  0.6970  0.5854  0.7884  0.4814
gte        lion  2  0.4577  0.6792  0.5957  0.7721  0.4642
gte        lion  3  0.4521  0.6571  0.5931  0.7488  0.4662
minilm     adamw 1  0.4814  0.7008  0.5828  0.8000  0.4884
minilm     adamw 2  0.4891  0.7094  0.5818  0.8116  0.4916
minilm     adamw 3  0.4908  0.7127  0.5826  0.8116  0.4943
minilm     lion  1  0.4858  0.7031  0.5890  0.8140  0.4952
minilm     lion  2  0.4755  0.6916  0.5942  0.8070  0.4803
minilm     lion  3  0.4706  0.6808  0.5988  0.8070  0.4809
modernbert adamw 1  0.5066  0.7105  0.5866  0.8163  0.5161
modernbert adamw 2  0.4893  0.6839  0.5886  0.7814  0.4946
modernbert adamw 3  0.4971  0.6959  0.5916  0.7860  0.5116
modernbert lion  1  0.5121  0.7142  0.5834  0.8163  0.5148
modernbert lion  2  0.5115  0.7225  0.5908  0.8209  0.5183
modernbert lion  3  0.5020  0.7051  0.5988  0.8256  0.5102
""",
    "Table A.2": """
gte        adamw 1  0.8930  0.8116  0.7372  0.3965
gte        adamw 2  0.8698  0.8256  0.7326  0.3963
gte        adamw 3  0.8558  0.8093  0.7128  0.3942
gte        lion  1  0.8558  0.7884  0.7070  0.3893
gte        lion  2  0.8326  0.7721  0.6802  0.3740
gte        lion  3  0.8140  0.7488  0.6907  0.3740
minilm     adamw 1  0.8698  0.8000  0.7151  0.3870
minilm     adamw 2  0.8698  0.8116  0.7186  0.3895
minilm     adamw 3  0.8558  0.8116  0.7256  0.3891
minilm     lion  1  0.8651  0.8140  0.7233  0.3847
minilm     lion  2  0.8744  0.8070  0.7081  0.3821
minilm     lion  3  0.8465  0.8070  0.6930  0.3809
modernbert adamw 1  0.8651  0.8163  0.7349  0.3993
modernbert adamw 2  0.8605  0.7814  0.6953  0.3912
modernbert adamw 3  0.8465  0.7860  0.6988  0.3958
modernbert lion  1  0.8791  0.8163  0.7314  0.4033
modernbert lion  2  0.8698  0.8209  0.7279  0.4016
modernbert lion  3  0.8651  0.8256  0.7093  0.3967
""",
    "Table A.3": """
gte        adamw 1  0.1051  0.1689  0.2815  0.5501
gte        adamw 2  0.1041  0.1760  0.2753  0.5538
gte        adamw 3  0.1051  0.1715  0.2692  0.5489
gte        lion  1  0.1002  0.1614  0.2684  0.5401
gte        lion  2  0.0973  0.1610  0.2545  0.5211
gte        lion  3  0.0929  0.1542  0.2574  0.5181
minilm     adamw 1  0.1027  0.1652  0.2645  0.5426
minilm     adamw 2  0.1013  0.1668  0.2676  0.5446
minilm     adamw 3  0.1007  0.1702  0.2719  0.5427
minilm     lion  1  0.1022  0.1688  0.2704  0.5338
minilm     lion  2  0.1025  0.1641  0.2613  0.5338
minilm     lion  3  0.1001  0.1676  0.2542  0.5249
modernbert adamw 1  0.0995  0.1678  0.2731  0.5520
modernbert adamw 2  0.0979  0.1634  0.2603  0.5443
modernbert adamw 3  0.1019  0.1623  0.2627  0.5476
modernbert lion  1  0.1052  0.1689  0.2733  0.5542
modernbert lion  2  0.1048  0.1732  0.2699  0.5608
modernbert lion  3  0.1037  0.1722  0.2640  0.5570
""",
    "Table A.4": """
gte        adamw 1  0.7567  0.7224  0.7071  0.6591
gte        adamw 2  0.7343  0.7203  0.6967  0.6550
gte        adamw 3  0.7080  0.6902  0.6703  0.6426
gte        lion  1  0.7229  0.6970  0.6786  0.6433
gte        lion  2  0.7008  0.6792  0.6580  0.6248
gte        lion  3  0.6801  0.6571  0.6450  0.6124
minilm     adamw 1  0.7207  0.7008  0.6833  0.6402
minilm     adamw 2  0.7345  0.7094  0.6908  0.6471
minilm     adamw 3  0.7244  0.7127  0.6949  0.6474
minilm     lion  1  0.7163  0.7031  0.6829  0.6369
minilm     lion  2  0.7099  0.6916  0.6706  0.6295
minilm     lion  3  0.6837  0.6808  0.6584  0.6268
modernbert adamw 1  0.7171  0.7105  0.6936  0.6555
modernbert adamw 2  0.7112  0.6839  0.6701  0.6431
modernbert adamw 3  0.7156  0.6959  0.6729  0.6497
modernbert lion  1  0.7285  0.7142  0.6991  0.6610
modernbert lion  2  0.7381  0.7225  0.6978  0.6638
modernbert lion  3  0.7165  0.7051  0.6797  0.6542
""",
}


@dataclass(frozen=True)
class ThesisValue:
    table: str  # "Table 5.1", "Table A.1", ...
    model: str
    optimizer: str
    epoch: int
    metric: str  # canonical name (eval/measures.py)
    value: float


def thesis_values() -> list[ThesisValue]:
    """Every number the thesis reports in Table 5.1 and Tables A.1-A.4."""
    values = []
    for title, text in _ROWS.items():
        metrics = [metric for _, metric in THESIS_TABLES[title].metrics]
        for line in text.strip().splitlines():
            model, optimizer, epoch, *numbers = line.split()
            if len(numbers) != len(metrics):
                raise ValueError(f"{title} row {line!r} expects {len(metrics)} values, but has {len(numbers)}")
            for metric, number in zip(metrics, numbers):
                values.append(ThesisValue(title, model, optimizer, int(epoch), metric, float(number)))
    return values


def lookup(table: str) -> dict[tuple[str, str, int, str], float]:
    """One table's values keyed (model, optimizer, epoch, metric)."""
    return {(v.model, v.optimizer, v.epoch, v.metric): v.value for v in thesis_values() if v.table == table}


@dataclass(frozen=True)
class Disagreement:
    model: str
    optimizer: str
    epoch: int
    metric: str
    values: dict[str, float]  # table -> the value it reports


def disagreements() -> list[Disagreement]:
    """Cells that two of the thesis's tables report with different values."""
    by_cell: dict[tuple[str, str, int, str], dict[str, float]] = defaultdict(dict)
    for v in thesis_values():
        by_cell[(v.model, v.optimizer, v.epoch, v.metric)][v.table] = v.value
    return [
        Disagreement(*cell, values=tables) for cell, tables in sorted(by_cell.items()) if len(set(tables.values())) > 1
    ]

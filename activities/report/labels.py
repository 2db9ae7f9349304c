"""The report's words in Chinese and English: one table, so both languages always agree.

The Chinese terms are the ones of China's annual report on the transformation of scientific and
technological achievements (科技成果转化年度报告) and of Shanghai's action plan (2021-2023).
"""

from __future__ import annotations

from typing import Literal, get_args

Lang = Literal["zh", "en"]
LANGS: tuple[Lang, ...] = get_args(Lang)
DEFAULT_LANG: Lang = "zh"

# key: (Chinese, English)
_TERMS: dict[str, tuple[str, str]] = {
    "title": ("科技成果转化年度报告", "Annual report on the transformation of achievements"),
    "no_institution": ("本年度无任何单位发生转化事项。", "No institution had events."),
    "count": ("数量", "Count"),
    "amount": ("金额（元）", "Amount (CNY)"),
    "item": ("项目", "Item"),
    "all_figures": ("全部数据", "All figures"),
    "not_recorded": ("未记录", "not recorded"),
    "unrecorded": ("未记录", "not recorded"),
    "unknown": ("未记录", "not recorded"),
    "none": ("无", "none"),
    # The six parts, then the parts added for Shanghai's plan.
    "part.achievements": ("一、科技成果情况", "1. Achievements"),
    "part.deals": ("二、转让、许可与作价投资", "2. Transfers, licences and equity investments"),
    "part.contracts": ("三、技术合同", "3. Technology contracts"),
    "part.income": ("四、现金收入及分配", "4. Cash received and its distribution"),
    "part.rewards": ("五、奖励情况", "5. Rewards"),
    "part.companies": ("六、创设企业与股权", "6. Companies created and equity held"),
    "part.listings": ("强制挂牌交易", "Mandatory listing"),
    "part.poc": ("概念验证资助", "Proof-of-concept grants"),
    "part.brokered": (
        "技术转移机构与技术经理人促成交易、团队股权奖励",
        "Deals brokered by transfer institutions and technology managers; the team's equity",
    ),
    "part.fund": ("技术转移专项资金", "The technology transfer fund"),
    "part.funnel": ("各阶段进展", "Progress through the stages"),
    "part.corrections": ("以前年度更正", "Corrections to earlier years"),
    # Figures.
    "disclosed": ("披露科技成果", "Achievements disclosed"),
    "by_field": ("按技术领域", "By technology field"),
    "by_funding": ("按资金来源", "By source of funding"),
    "by_ownership": ("按权属", "By ownership"),
    "by_ip_kind": ("按知识产权类型（件）", "By type of intellectual property (assets)"),
    "transfers": ("转让", "Transfers"),
    "licences": ("许可", "Licences"),
    "equity_investments": ("作价投资（持有股权价值）", "Equity investments (equity held)"),
    "contracts_total": ("技术合同合计", "Technology contracts, total"),
    "verified_total": ("认定登记金额", "Verified (registered) amount"),
    "tax_eligible": (
        "可享受税收优惠的技术合同",
        "Contracts eligible for the tax preference",
    ),
    "contract_amounts": ("各类技术合同金额", "Contract amounts by type"),
    "cash_received": ("现金收入", "Cash received"),
    "costs": ("相关成本", "Costs"),
    "service_fees": ("技术转移服务费", "Brokers' service fees"),
    "net_income": ("净收入", "Net income"),
    "team_owner_income": ("团队作为权利人所得", "Team as (co-)owner"),
    "team_reward": ("科研团队奖励", "Team reward"),
    "tto_fund": ("技术转移专项资金", "Technology transfer fund"),
    "institution": ("单位留存", "Institution"),
    "cash_by_month": ("各月现金收入", "Cash received by month"),
    "payments": ("到账笔数", "Payments"),
    "rewards_paid": ("奖励金额", "Rewards paid"),
    "teams_rewarded": ("获奖励成果（团队）", "Achievements whose team was rewarded"),
    "people_rewarded": ("获奖励人数", "People rewarded"),
    "companies_created": ("创设企业", "Companies created"),
    "equity_registered": ("登记技术股权", "Equity registered"),
    "state_owned_equity": ("其中：国有股权分类管理", "of which state-owned (categorized)"),
    "equity_held": ("持有股权价值", "Value of equity held"),
    "mandatory_triggered": ("强制挂牌（逾期未转化）", "Mandatory listings made"),
    "mandatory_exempted": ("豁免强制挂牌", "Mandatory listings exempted"),
    "poc_grants": ("获概念验证资助", "Proof-of-concept grants"),
    "funnel_caption": ("进入各阶段的成果数", "Achievements entering each stage"),
    "events": ("事件数", "Events"),
    "correction_of": ("{year} 年度截止后记录的事项", "{year}: events recorded after its close"),
    "foot": (
        "{year} 年度共 {events} 个转化事项，按业务日期（{zone}）统计{close}；生成于 {at}。"
        "金额单位为人民币元，均来自已记录的事项。",
        "{events} lifecycle events in {year}, by business date in {zone}{close}; generated "
        "{at}. Amounts in CNY (yuan), from recorded events only.",
    ),
    "foot_close": ("，账目于 {at} 截止", "; books close {at}"),
    "scale_linear": ("线性刻度", "linear scale"),
    "scale_log": ("对数刻度（数值差距大）", "logarithmic scale (values differ widely)"),
    "unit_yuan": ("元", "yuan"),
    "unit_wan": ("万元", "10k yuan"),
    "unit_yi": ("亿元", "100M yuan"),
    # Stages.
    "stage.disclosure": ("成果披露", "disclosure"),
    "stage.evaluation": ("评估评价", "evaluation"),
    "stage.proof_of_concept": ("概念验证", "proof of concept"),
    "stage.transaction": ("交易", "transaction"),
    "stage.incubation": ("孵化", "incubation"),
    "stage.reporting": ("报告", "reporting"),
    "stage.completed": ("完成", "completed"),
    # Technology contracts.
    "contract.development": ("技术开发", "development"),
    "contract.transfer": ("技术转让", "transfer"),
    "contract.licence": ("技术许可", "licence"),
    "contract.consulting": ("技术咨询", "consulting"),
    "contract.service": ("技术服务", "service"),
    # Technology fields.
    "field.integrated_circuits": ("集成电路", "integrated circuits"),
    "field.biomedicine": ("生物医药", "biomedicine"),
    "field.artificial_intelligence": ("人工智能", "artificial intelligence"),
    "field.advanced_materials": ("新材料", "advanced materials"),
    "field.new_energy": ("新能源", "new energy"),
    "field.advanced_manufacturing": ("高端装备制造", "advanced manufacturing"),
    "field.information_technology": ("信息技术", "information technology"),
    "field.agriculture": ("农业", "agriculture"),
    "field.environment": ("生态环保", "environment"),
    "field.other": ("其他", "other"),
    # Funding.
    "funding.municipal_finance": ("市级财政资金", "municipal finance"),
    "funding.national_finance": ("中央财政资金", "national finance"),
    "funding.enterprise": ("企业资金", "enterprise"),
    "funding.self": ("自筹资金", "own funds"),
    # Ownership.
    "ownership.institution": ("单位所有", "institution"),
    "ownership.researcher_owned": ("赋予科研人员所有权", "owned by the researchers"),
    "ownership.joint": ("单位与科研人员共有", "joint"),
    "ownership.long_term_use": ("赋予长期使用权", "long-term right of use"),
    # Intellectual property.
    "ip.patent": ("专利", "patent"),
    "ip.software_copyright": ("计算机软件著作权", "software copyright"),
    "ip.ic_layout": ("集成电路布图设计", "IC layout design"),
    "ip.plant_variety": ("植物新品种", "plant variety"),
    "ip.technical_secret": ("技术秘密", "technical secret"),
}

MONTHS: dict[Lang, tuple[str, ...]] = {
    "zh": tuple(f"{m}月" for m in range(1, 13)),
    "en": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
}


def t(key: str, lang: Lang, **values: object) -> str:
    """The term in `lang`; an unknown key reads as itself, never as an error in a filed report."""
    zh, en = _TERMS.get(key, (key, key))
    text = zh if lang == "zh" else en
    return text.format(**values) if values else text


def term(prefix: str, value: str, lang: Lang) -> str:
    """A recorded value (a stage, a field...) in words; one not in the table reads as it is."""
    key = f"{prefix}.{value}"
    if key in _TERMS:
        return t(key, lang)
    if value in _TERMS:  # "unknown", "unrecorded"
        return t(value, lang)
    return value.replace("_", " ")


def both(key: str, **values: object) -> tuple[str, str]:
    """Chinese and English, for a heading that shows both."""
    return t(key, "zh", **values), t(key, "en", **values)


# The own words of the brokered deals' and the fund's sections (activities/report/sections.py).
BROKERED_TERMS = {
    "named": ("{name}（{id}）", "{name} ({id})"),
    "transfer_institutions": ("技术转移机构", "Technology transfer institutions"),
    "technology_managers": ("技术经理人", "Technology managers"),
    "broker": ("名称（编号）", "Name (number)"),
    "deals": ("促成交易（项）", "Deals brokered"),
    "deal_amount": ("合同金额（元）", "Contract amount (CNY)"),
    "fees_agreed": ("约定服务费（元）", "Fees agreed (CNY)"),
    "fees_paid": ("已收取服务费（元）", "Fees taken (CNY)"),
    "team_equity": ("作价投资 团队股权奖励", "Equity investments: the team's equity reward"),
    "achievement": ("成果", "Achievement"),
    "certificate": ("股权登记证书", "Equity certificate"),
    "equity_share": ("作价股权比例", "Equity share"),
    "team_share": ("团队股权比例", "Team's share"),
    "reward": ("其中：奖励部分", "of which its reward"),
}
FUND_TERMS = {
    "opening_balance": ("年初余额", "Opening balance"),
    "accrued": ("本年计提", "Accrued"),
    "used": ("本年使用", "Used"),
    "closing_balance": ("年末余额", "Closing balance"),
}

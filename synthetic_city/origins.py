"""Fixed tables: the city's districts, the provinces migrants come from, and Chinese names.

These are constants rather than random draws so that a region code or a surname means the same
thing in every run; only who gets which is random.
"""

from __future__ import annotations

import numpy as np

#: The city's districts (code, name, relative population), most populous first. A city of K
#: districts uses the first K of these.
DISTRICTS: tuple[tuple[str, str, float], ...] = (
    ("440111", "白云区", 3.74),
    ("440113", "番禺区", 2.65),
    ("440106", "天河区", 2.24),
    ("440105", "海珠区", 1.82),
    ("440114", "花都区", 1.64),
    ("440118", "增城区", 1.47),
    ("440112", "黄埔区", 1.26),
    ("440103", "荔湾区", 1.12),
    ("440104", "越秀区", 1.04),
    ("440115", "南沙区", 0.85),
    ("440117", "从化区", 0.67),
)

CITY_CODE = "4401"
CITY_NAME = "广州市"

#: Provinces (2-digit code, relative share of the city's migrants, prefectures used).
_PROVINCES: tuple[tuple[int, float, tuple[int, ...]], ...] = (
    (44, 0.28, (2, 5, 9, 13, 14, 15, 17, 18, 52, 53)),  # other cities of the same province
    (45, 0.14, (1, 3, 4, 5, 8, 9, 10, 13)),  # Guangxi
    (43, 0.14, (1, 2, 3, 4, 5, 7, 10, 11, 12)),  # Hunan
    (36, 0.07, (1, 4, 7, 8, 9, 11)),  # Jiangxi
    (51, 0.06, (1, 3, 5, 7, 10, 13, 16, 17)),  # Sichuan
    (42, 0.06, (1, 2, 6, 8, 9, 10, 11)),  # Hubei
    (41, 0.05, (1, 3, 5, 13, 14, 15, 16, 17)),  # Henan
    (52, 0.05, (1, 2, 3, 4, 5, 26, 27)),  # Guizhou
    (50, 0.04, (1, 2)),  # Chongqing
    (35, 0.03, (1, 2, 3, 5, 6, 8)),  # Fujian
    (34, 0.03, (1, 2, 4, 12, 15)),  # Anhui
    (53, 0.03, (1, 3, 4, 25, 28)),  # Yunnan
    (46, 0.02, (1, 2)),  # Hainan
)
#: County suffixes combined with each prefecture (districts 02-03, counties 21-25, cities 81-82).
_COUNTIES = (2, 3, 21, 22, 23, 24, 81)


def migrant_regions() -> tuple[np.ndarray, np.ndarray]:
    """Region codes (int) migrants' IDs can carry and the probability of each."""
    codes: list[int] = []
    weights: list[float] = []
    for prov, share, prefectures in _PROVINCES:
        per = share / (len(prefectures) * len(_COUNTIES))
        for pref in prefectures:
            for county in _COUNTIES:
                codes.append(prov * 10_000 + pref * 100 + county)
                weights.append(per)
    w = np.array(weights)
    return np.array(codes, dtype=np.int64), w / w.sum()


#: Surnames with rough relative frequencies (the most common ~100 cover most of the population).
SURNAMES: tuple[tuple[str, float], ...] = tuple(
    (s, float(f))
    for s, f in (
        ("王", 7.1), ("李", 7.0), ("张", 6.7), ("刘", 5.4), ("陈", 4.5), ("杨", 3.1), ("黄", 2.6),
        ("赵", 2.3), ("吴", 2.0), ("周", 1.9), ("徐", 1.5), ("孙", 1.4), ("马", 1.3), ("朱", 1.3),
        ("胡", 1.2), ("郭", 1.2), ("何", 1.2), ("林", 1.2), ("高", 1.1), ("罗", 1.1), ("郑", 1.0),
        ("梁", 1.0), ("谢", 0.8), ("宋", 0.7), ("唐", 0.7), ("许", 0.7), ("韩", 0.7), ("冯", 0.7),
        ("邓", 0.7), ("曹", 0.6), ("彭", 0.6), ("曾", 0.6), ("肖", 0.6), ("田", 0.5), ("董", 0.5),
        ("袁", 0.5), ("潘", 0.5), ("于", 0.5), ("蒋", 0.5), ("蔡", 0.5), ("余", 0.5), ("杜", 0.5),
        ("叶", 0.5), ("程", 0.4), ("苏", 0.4), ("魏", 0.4), ("吕", 0.4), ("丁", 0.4), ("任", 0.4),
        ("沈", 0.4), ("姚", 0.4), ("卢", 0.4), ("姜", 0.3), ("崔", 0.3), ("钟", 0.3), ("谭", 0.3),
        ("陆", 0.3), ("汪", 0.3), ("范", 0.3), ("金", 0.3), ("石", 0.3), ("廖", 0.3), ("贾", 0.3),
        ("夏", 0.3), ("韦", 0.3), ("付", 0.3), ("方", 0.3), ("白", 0.2), ("邹", 0.2), ("孟", 0.2),
        ("熊", 0.2), ("秦", 0.2), ("邱", 0.2), ("江", 0.2), ("尹", 0.2), ("薛", 0.2), ("闫", 0.2),
        ("段", 0.2), ("雷", 0.2), ("侯", 0.2), ("龙", 0.2), ("史", 0.2), ("陶", 0.2), ("黎", 0.2),
        ("贺", 0.2), ("顾", 0.2), ("毛", 0.2), ("郝", 0.2), ("龚", 0.2), ("邵", 0.2), ("万", 0.2),
        ("钱", 0.2), ("严", 0.2), ("覃", 0.2), ("武", 0.2), ("戴", 0.2), ("莫", 0.2), ("孔", 0.2),
        ("欧阳", 0.05), ("司徒", 0.03), ("上官", 0.02),
    )
)  # fmt: skip

#: Given-name characters, common to both sexes, mostly male, mostly female.
GIVEN_COMMON = "文明华建国平志晓海军伟小永玉春金云立新俊天宇嘉子佳思雨心安宁欣"
GIVEN_MALE = "强磊勇涛斌超鹏辉刚杰浩宏峰龙毅东波洋亮健林成军浩然博晨轩豪鑫"
GIVEN_FEMALE = "芳娜敏静丽艳娟霞秀燕玲婷琳颖洁萍红梅莉慧倩雪琴丹蓉薇怡彤妍璐"

#: Characters for place names (streets, towns, communities, villages).
PLACE_CHARS = (
    "东西南北新沙石龙凤华江山岗塘田湖林桥元福景云海珠平安康宁泰兴"
    "和乐庆茶滘涌洲岭坑围埔冲湾坦港棠岑槎沥"
)

use super::*;

fn terms_with(lexicon: &Lexicon, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    analyze_with(Some(lexicon), text, &mut |t, _| out.push(t.to_owned()));
    out
}

#[test]
fn traditional_and_simplified_text_share_their_terms() {
    let lexicon = lexicon::sample();
    let traditional = terms_with(&lexicon, "三哩島的機器人");
    for term in ["三哩", "岛的", "机器", "器人"] {
        assert!(
            traditional.contains(&term.to_owned()),
            "{term}: {traditional:?}"
        );
    }
    // 哩 is also read as 里, so the Simplified name 三里岛 finds it.
    for term in terms_with(&lexicon, "三里岛") {
        assert!(traditional.contains(&term), "{term}: {traditional:?}");
    }
    // A Taiwan word also stands for the mainland one.
    assert!(terms_with(&lexicon, "軟體").contains(&"软件".to_owned()));
    // Positions stay: one folded character per character.
    assert_eq!(fold_with(&lexicon, "Ａ三哩島").len(), 4);
}

#[test]
fn chinese_becomes_overlapping_bigrams() {
    assert_eq!(query_terms("人形机器人"), ["人形", "形机", "机器", "器人"]);
    assert_eq!(query_terms("的"), ["的"]);
}

#[test]
fn names_written_in_chinese_are_also_their_english_terms() {
    // Simplified and Traditional forms; the English name as the analyzer reads it.
    let terms = index_terms("马斯克和黄仁勋谈輝達的新芯片");
    for name in ["musk", "jensen", "huang", "nvidia"] {
        assert!(terms.iter().any(|t| t == name), "{name} missing: {terms:?}");
    }
    // A query in Chinese asks for the English terms too, so English stories match.
    assert!(query_terms("美联储").contains(&"fed".to_owned()));
    // Once per mention, as a repeated word counts in BM25.
    let twice = index_terms("台积电说，台积电会");
    assert_eq!(twice.iter().filter(|t| *t == "tsmc").count(), 2);
    // Latin text is untouched; a name already in Latin letters stays one term.
    assert_eq!(query_terms("Musk"), ["musk"]);
    assert_eq!(
        index_terms("NVIDIA 发布")
            .iter()
            .filter(|t| *t == "nvidia")
            .count(),
        1
    );
}

#[test]
fn every_name_alias_has_english_terms_and_chinese_forms() {
    let text = include_str!("name_aliases.txt");
    let aliases = parse_aliases(text);
    assert!(aliases.terms.len() > 100, "{} names", aliases.terms.len());
    for terms in &aliases.terms {
        assert!(
            terms.iter().any(|(_, whole)| *whole),
            "a name without terms"
        );
    }
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
    {
        for form in line.split_once('=').unwrap().1.split(',') {
            let form = form.trim();
            assert!(
                form.chars().count() >= 2 && form.chars().all(is_cjk),
                "{form:?} is not a name in Chinese characters"
            );
        }
    }
    // The longest form wins: Supermicro is not also AMD, Peking University not Beijing.
    let terms = index_terms("美超微与北京大学");
    assert!(terms.contains(&"supermicro".to_owned()));
    assert!(!terms.contains(&"amd".to_owned()), "{terms:?}");
    assert!(!terms.contains(&"beijing".to_owned()), "{terms:?}");
    // English names of a query, as Chinese forms to find in a snippet.
    assert_eq!(chinese_forms("Musk sues OpenAI"), ["马斯克", "馬斯克"]);
    let fed = chinese_forms("what the Federal Reserve said");
    assert!(fed.contains(&"美联储".to_owned()), "{fed:?}");
    assert!(
        chinese_forms("the reserve team").is_empty(),
        "half a name is no name"
    );
    // One form may stand for two names.
    let terms = index_terms("月之暗面发布");
    assert!(terms.contains(&"moonshot".to_owned()) && terms.contains(&"kimi".to_owned()));
}

#[test]
fn names_with_digits_and_hyphens_stay_whole_and_their_parts_are_indexed() {
    assert_eq!(
        query_terms("Hugging Face的`hf-mem`工具"),
        ["hugging", "face", "的", "hf-mem", "工具"]
    );
    assert_eq!(
        index_terms("GPT-5 and Qwen2.5-VL"),
        ["gpt-5", "gpt", "5", "and", "qwen2.5-vl", "qwen2.5", "vl"]
    );
}

#[test]
fn trailing_punctuation_and_full_width_letters_are_normalised() {
    assert_eq!(
        query_terms("Atlas. (Ｇｅｍｉｎｉ－３)…"),
        ["atlas", "gemini-3"]
    );
    assert_eq!(
        query_terms("50公斤、56个自由度"),
        ["50", "公斤", "56", "个自", "自由", "由度"]
    );
}

#[test]
fn term_overlap_weighs_rare_shared_names_over_common_words() {
    let terms = latin_terms("The new Atlas from Boston Dynamics lifts 50 kg");
    assert_eq!(terms, ["50", "atlas", "boston", "dynamics", "kg", "lifts"]);
    let df: std::collections::HashMap<String, usize> = [
        ("50", 5),
        ("atlas", 2),
        ("boston", 2),
        ("dynamics", 2),
        ("kg", 10),
        ("lifts", 0),
    ]
    .into_iter()
    .map(|(t, d)| (t.to_owned(), d))
    .collect();
    let story: std::collections::HashSet<String> = index_terms("Boston Dynamics的Atlas机器人")
        .into_iter()
        .collect();
    let overlap = term_overlap(&terms, &story, 100, &df);
    assert!(overlap > 0.6 && overlap < 1.0, "{overlap}");
    let none = term_overlap(&terms, &Default::default(), 100, &df);
    assert_eq!(none, 0.0);
}

#[test]
fn amounts_with_multipliers_are_one_term_in_both_languages() {
    let n = |text: &str| -> Vec<String> {
        query_terms(text)
            .into_iter()
            .filter(|t| t.starts_with("_n"))
            .collect()
    };
    assert_eq!(n("900万次下载"), ["_n9000000"]);
    assert_eq!(
        n("超过900万次下载"),
        ["_n9000000"],
        "after a Chinese character"
    );
    assert_eq!(n("9 million downloads"), ["_n9000000"]);
    assert_eq!(n("passed 9,000,000 downloads"), ["_n9000000"]);
    assert_eq!(n("a 9M download count"), ["_n9000000"]);
    assert_eq!(n("1000亿美元"), n("$100 billion"));
    assert_eq!(n("9.44 亿美元"), ["_n944000000"]);
    assert_eq!(
        n("Anysphere raises $900M at a $9.9B valuation"),
        ["_n900000000", "_n9900000000"]
    );
    assert_eq!(n("2.5万亿"), ["_n2500000000000"]);
    assert_eq!(n("10万卡集群 and 100,000 GPUs"), ["_n100000", "_n100000"]);
    assert!(
        n("GPT-5 in 2026 with 16TB, H100 and 4m").len() == 1,
        "plain numbers stay as written"
    );
    assert!(
        n("gpt-4 million").is_empty(),
        "a digit inside a name starts no amount"
    );
    assert!(
        n("ran 100 m in 9.6 s; top 5 M&A deals").is_empty(),
        "one letter, not glued"
    );
    assert!(
        n("ids 12345,678 and sizes 128, 256, 512").is_empty(),
        "a first group over three digits, or a list, is no grouped number"
    );
    assert!(
        n("融资100，200家公司").is_empty(),
        "a Chinese comma separates clauses"
    );
    assert_eq!(
        n("Intel N5000 chips, 5,000 units"),
        ["_n5000"],
        "names are not amounts"
    );
}

#[test]
fn acronym_plurals_are_read_as_the_acronym_chinese_text_writes() {
    assert_eq!(query_terms("TPUs and H100s"), ["tpu", "and", "h100"]);
    assert!(index_terms("第七代TPU Ironwood").contains(&"tpu".to_owned()));
    assert_eq!(
        headline_names("Ironwood TPUs are coming to general availability"),
        ["tpu"]
    );
    // Not acronyms: a word, a single capital, a lower-case plural, one capital and
    // one digit.
    assert_eq!(
        query_terms("Gemmas As bugs K8s"),
        ["gemmas", "as", "bugs", "k8s"]
    );
    // The plural as written is still indexed, for a query typed in lower case.
    let terms = index_terms("NVIDIA GPUs");
    assert!(terms.contains(&"gpu".to_owned()) && terms.contains(&"gpus".to_owned()));
}

#[test]
fn a_query_names_something_when_it_has_a_capital_a_digit_or_a_joined_word() {
    for named in [
        "Musk",
        "emad Mostaque",
        "gemma 3",
        "hf-mem",
        "qwen2.5",
        "ＧＰＴ５",
    ] {
        assert!(names_something(named), "{named}");
    }
    for plain in [
        "job candidates using face swap in video interviews",
        "robots - and people",
        "what's new",
        "人形机器人",
    ] {
        assert!(!names_something(plain), "{plain}");
    }
}

#[test]
fn headline_names_are_the_words_a_chinese_summary_keeps_in_latin_letters() {
    assert_eq!(
        headline_names("Apptronik to run Gemini Robotics on Apollo humanoids in GXO warehouses"),
        ["gemini", "robotics", "apollo", "gxo"],
        "the first word is capitalised by position only; lower-case words are no names"
    );
    assert_eq!(
        headline_names("NVIDIA's Rubin CPX: a GPU built for million-token context"),
        ["nvidia", "rubin", "cpx", "gpu"]
    );
    assert_eq!(
        headline_names("Spot 5.1 and Orbit 5.1 bring ｉＰｈｏｎｅ support, up 40%"),
        ["5.1", "orbit", "iphone", "40"],
        "digits make a name, repeats count once, full width folds"
    );
    assert_eq!(
        headline_names("More than half of trending papers come from Chinese labs in the US"),
        ["chinese"],
        "a place is a name (中国 stands for it), `US` is no name to look for"
    );
    let story: std::collections::HashSet<String> =
        index_terms("中国实验室的论文过半").into_iter().collect();
    assert_eq!(
        names_found(
            &headline_names("Trending papers: Chinese labs lead"),
            &story
        ),
        Some(1.0)
    );
    assert_eq!(
        headline_names("Jensen Huang shows off 英伟达 Vera Rubin"),
        ["huang", "vera", "rubin"]
    );
}

#[test]
fn names_found_is_the_share_of_headline_names_the_story_holds() {
    let story: std::collections::HashSet<String> =
        index_terms("Gemini Robotics 模型将运行在 Atlas 上")
            .into_iter()
            .collect();
    let names = headline_names("Apptronik to run Gemini Robotics on Apollo humanoids in GXO");
    assert_eq!(names_found(&names, &story), Some(0.5));
    assert_eq!(names_found(&[], &story), None);
    let glued: std::collections::HashSet<String> =
        index_terms("Huggingface热门论文").into_iter().collect();
    let names = headline_names("Trending papers on Hugging Face");
    assert_eq!(
        names_found(&names, &glued),
        Some(1.0),
        "two names written as one"
    );
    let story: std::collections::HashSet<String> =
        index_terms("Anysphere以99亿美元估值融资9亿美元")
            .into_iter()
            .collect();
    let names = headline_names("Cursor maker Anysphere raises $900M at a $9.9B valuation");
    assert_eq!(
        names_found(&names, &story),
        Some(1.0),
        "figures match as amounts"
    );
}

#[test]
fn match_expressions_quote_every_term_and_skip_empty_queries() {
    assert_eq!(
        match_expression("OR hf-mem NOT").as_deref(),
        Some("\"hf-mem\" OR \"not\" OR \"or\"")
    );
    assert_eq!(match_expression("  …！？ "), None);
}

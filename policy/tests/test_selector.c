/* The selector language (calico-behaviour.md section 4): a table of cases covering the lexical
 * rules, grammar, semantics and canonical form, then properties checked over every case, over
 * randomly generated selectors (against an independent evaluator and printer) and over random
 * bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"

enum want { FAILS = -1, NO_MATCH = 0, MATCH = 1 };

struct sel_case {
	const char *sel;
	const char *labels; /* "k=v;k2=v2" (the first '=' separates) */
	enum want want;
	const char *canonical; /* NULL: not checked against a literal */
};

/* Each row's expectation was worked out from calico-behaviour.md section 4 and, where Calico's
 * own tests have the same case (parser_test.go, tokenizer_test.go), agrees with them. */
static const struct sel_case cases[] = {
    {"a == \"b\"", "a=b", MATCH, "a == \"b\""},
    {"a == \"b\"", "a=b;c=d", MATCH, NULL},
    {"a == \"b\"", "", NO_MATCH, NULL},
    {"a == \"b\"", "a=c", NO_MATCH, NULL},
    {"a == \"b\"", "c=d", NO_MATCH, NULL},
    {"a == \"b\"", "a=B", NO_MATCH, NULL},
    {"a == \"b\"", "a=b ", NO_MATCH, NULL},
    {"a == \"\"", "a=", MATCH, "a == \"\""},
    {"a == \"\"", "", NO_MATCH, NULL},
    {"a != \"b\"", "a=a", MATCH, "a != \"b\""},
    {"a != \"b\"", "a=b", NO_MATCH, NULL},
    {"a != \"b\"", "", MATCH, NULL},
    {"a != \"a\"", "b=a", MATCH, NULL},
    {"a != \"\"", "a=", NO_MATCH, NULL},
    {"a != \"\"", "", MATCH, NULL},
    {"a in {\"a\"}", "a=a", MATCH, "a in {\"a\"}"},
    {"a in {\"a\"}", "a=b", NO_MATCH, NULL},
    {"a in {\"a\"}", "", NO_MATCH, NULL},
    {"a in {\"a\", \"b\"}", "a=a", MATCH, "a in {\"a\", \"b\"}"},
    {"a in {\"a\", \"b\"}", "a=b", MATCH, NULL},
    {"a in {\"a\", \"b\"}", "a=c", NO_MATCH, NULL},
    {"a in {}", "a=", NO_MATCH, "a in {}"},
    {"a in {}", "", NO_MATCH, NULL},
    {"a in {\"\"}", "a=", MATCH, "a in {\"\"}"},
    {"a not in {\"d\", \"e\"}", "a=a", MATCH, "a not in {\"d\", \"e\"}"},
    {"a not in {\"a\"}", "a=a", NO_MATCH, NULL},
    {"a not in {\"a\"}", "", MATCH, NULL},
    {"a not in {}", "a=x", MATCH, "a not in {}"},
    {"a not in {}", "", MATCH, NULL},
    {"has(a)", "a=b", MATCH, "has(a)"},
    {"has(a)", "a=", MATCH, NULL},
    {"has(a)", "b=a", NO_MATCH, NULL},
    {"has(b)", "a=b", NO_MATCH, NULL},
    {"!has(a)", "b=b", MATCH, "!has(a)"},
    {"!has(a)", "a=", NO_MATCH, NULL},
    {"a contains \"a\"", "a=a", MATCH, "a contains \"a\""},
    {"a contains \"a\"", "a=bab", MATCH, NULL},
    {"a contains \"a\"", "a=aaa;b=c", MATCH, NULL},
    {"a contains \"a\"", "", NO_MATCH, NULL},
    {"a contains \"a\"", "a=b", NO_MATCH, NULL},
    {"a contains \"a\"", "b=aaa", NO_MATCH, NULL},
    {"a contains \"\"", "a=", MATCH, "a contains \"\""},
    {"a contains \"\"", "a=xyz", MATCH, NULL},
    {"a contains \"\"", "", NO_MATCH, NULL},
    {"a contains \"A\"", "a=a", NO_MATCH, NULL},
    {"a starts with \"a\"", "a=a", MATCH, "a starts with \"a\""},
    {"a starts with \"a\"", "a=abb", MATCH, NULL},
    {"a starts with \"a\"", "a=baa", NO_MATCH, NULL},
    {"a starts with \"a\"", "b=aaa", NO_MATCH, NULL},
    {"a starts with \"a\"", "", NO_MATCH, NULL},
    {"a starts with \"\"", "a=", MATCH, "a starts with \"\""},
    {"a starts with \"\"", "", NO_MATCH, NULL},
    {"a starts with \"abc\"", "a=ab", NO_MATCH, NULL},
    {"a ends with \"a\"", "a=a", MATCH, "a ends with \"a\""},
    {"a ends with \"a\"", "a=bba", MATCH, NULL},
    {"a ends with \"a\"", "a=aab", NO_MATCH, NULL},
    {"a ends with \"a\"", "b=aaa", NO_MATCH, NULL},
    {"a ends with \"a\"", "", NO_MATCH, NULL},
    {"a ends with \"\"", "a=x", MATCH, "a ends with \"\""},
    {"a ends with \"abc\"", "a=bc", NO_MATCH, NULL},
    {"a ends with \"abc\"", "a=xabc", MATCH, NULL},
    {"all()", "", MATCH, "all()"},
    {"all()", "a=b", MATCH, NULL},
    {"global()", "", MATCH, "global()"},
    {"global()", "a=b", MATCH, NULL},
    {"", "", MATCH, "all()"},
    {"", "a=b", MATCH, "all()"},
    {" ", "", MATCH, "all()"},
    {"\t \t", "x=y", MATCH, "all()"},
    {" all()", "", MATCH, "all()"},
    {" all() ", "a=b", MATCH, "all()"},
    {" global()", "a=b", MATCH, "global()"},
    {" (all() )", "", MATCH, "all()"},
    {"!all()", "", NO_MATCH, "!all()"},
    {"!global()", "a=b", NO_MATCH, "!global()"},
    {"all( )", "", MATCH, "all()"},
    {"all(\t)", "", MATCH, "all()"},
    {"global(  )", "", MATCH, "global()"},
    {"a == 'a'", "a=a", MATCH, "a == \"a\""},
    {"a == 'a'", "a=b", NO_MATCH, NULL},
    {"a == 'a'", "", NO_MATCH, NULL},
    {"a != 'a'", "a=a", NO_MATCH, "a != \"a\""},
    {"a == \"'\"", "a='", MATCH, "a == \"'\""},
    {"a == '\"'", "a=\"", MATCH, "a == '\"'"},
    {"a == 'it\"s'", "a=it\"s", MATCH, "a == 'it\"s'"},
    {"a == \"it's\"", "a=it's", MATCH, "a == \"it's\""},
    {"a contains '\"'", "a=x\"y", MATCH, "a contains '\"'"},
    {"a contains \"'\"", "a=x'y", MATCH, "a contains \"'\""},
    {"a startswith '\"'", "a=\"x", MATCH, "a starts with '\"'"},
    {"a endswith \"'\"", "a=x'", MATCH, "a ends with \"'\""},
    {"a!='\"'", "a=\"", NO_MATCH, "a != '\"'"},
    {"a!='\"'", "a=x", MATCH, NULL},
    {"a in {\"'\", '\"', \"c\"}", "a=c", MATCH, "a in {'\"', \"'\", \"c\"}"},
    {"a in {\"'\", '\"', \"c\"}", "a=\"", MATCH, NULL},
    {"a in {\"'\", '\"', \"c\"}", "a='", MATCH, NULL},
    {"a in {\"'\", '\"', \"c\"}", "", NO_MATCH, NULL},
    {"a in {\"'\", '\"', \"c\"}", "a=e", NO_MATCH, NULL},
    {"a not in {\"'\", '\"', \"c\"}", "", MATCH, "a not in {'\"', \"'\", \"c\"}"},
    {"a not in {\"'\", '\"', \"c\"}", "a=e", MATCH, NULL},
    {"a not in {\"'\", '\"', \"c\"}", "a=c", NO_MATCH, NULL},
    {"a not in {\"'\", '\"', \"c\"}", "a=\"", NO_MATCH, NULL},
    {"a == \"x y\"", "a=x y", MATCH, "a == \"x y\""},
    {"a == \"&&\"", "a=&&", MATCH, "a == \"&&\""},
    {"a == \"()\"", "a=()", MATCH, "a == \"()\""},
    {"a == \"\303\251\"", "a=\303\251", MATCH, "a == \"\303\251\""},
    {"a == \"\t\"", "a=\t", MATCH, "a == \"\t\""},
    {"a == \"x\ny\"", "a=x\ny", MATCH, "a == \"x\ny\""},
    {"a == \"{}\"", "a={}", MATCH, NULL},
    {"a == \"a,b\"", "a=a,b", MATCH, "a == \"a,b\""},
    {"a in {\"d\"}", "a=d", MATCH, "a in {\"d\"}"},
    {"a in {\"d\", \"a\", \"b\"}", "a=b", MATCH, "a in {\"a\", \"b\", \"d\"}"},
    {"a in {\"z\", \"x\", \"y\", \"a\"}", "a=y", MATCH, "a in {\"a\", \"x\", \"y\", \"z\"}"},
    {"a in {\"z\", \"z\", \"x\", \"y\", \"x\", \"a\"}", "a=z", MATCH,
     "a in {\"a\", \"x\", \"y\", \"z\"}"},
    {"a in {\"B\", \"a\", \"_\", \"1\"}", "a=_", MATCH, "a in {\"1\", \"B\", \"_\", \"a\"}"},
    {"a in {\"x\",}", "a=x", MATCH, "a in {\"x\"}"},
    {"a in {\"x\", \"y\" , }", "a=y", MATCH, "a in {\"x\", \"y\"}"},
    {"a in{\"x\"}", "a=x", MATCH, "a in {\"x\"}"},
    {"a in {\"x\",\"y\"}", "a=q", NO_MATCH, "a in {\"x\", \"y\"}"},
    {"a in {'x'}", "a=x", MATCH, "a in {\"x\"}"},
    {"a not in {\"b\", \"a\", \"b\"}", "a=c", MATCH, "a not in {\"a\", \"b\"}"},
    {"a notin {\"x\"}", "a=x", NO_MATCH, "a not in {\"x\"}"},
    {"a notin{\"x\"}", "a=y", MATCH, "a not in {\"x\"}"},
    {"a not  in {\"x\"}", "a=y", MATCH, "a not in {\"x\"}"},
    {"a not\t\tin {\"x\"}", "", MATCH, "a not in {\"x\"}"},
    {"a not \t in {\"x\"}", "a=x", NO_MATCH, "a not in {\"x\"}"},
    {"a in {\"aa\", \"a\"}", "a=a", MATCH, "a in {\"a\", \"aa\"}"},
    {"a in {\"ab\", \"a\", \"b\", \"ba\"}", "a=ba", MATCH, "a in {\"a\", \"ab\", \"b\", \"ba\"}"},
    {"a in {\"\", \"x\"}", "a=", MATCH, "a in {\"\", \"x\"}"},
    {"a in {\"x\"} && b in {}", "a=x;b=", NO_MATCH, "(a in {\"x\"} && b in {})"},
    {"!a in {\"a\"}", "a=b", MATCH, "!a in {\"a\"}"},
    {"!a in {\"a\"}", "a=a", NO_MATCH, NULL},
    {"!a in {\"a\"}", "", MATCH, NULL},
    {"a==\"b\"", "a=b", MATCH, "a == \"b\""},
    {"a!=\"b\"", "a=b", NO_MATCH, "a != \"b\""},
    {"a   ==   \"b\"", "a=b", MATCH, "a == \"b\""},
    {"\ta\t==\t\"b\"\t", "a=b", MATCH, "a == \"b\""},
    {"a contains\"x\"", "a=axa", MATCH, "a contains \"x\""},
    {"a starts  with \"x\"", "a=xa", MATCH, "a starts with \"x\""},
    {"a starts\twith \"x\"", "a=xa", MATCH, "a starts with \"x\""},
    {"a startswith \"x\"", "a=ax", NO_MATCH, "a starts with \"x\""},
    {"a ends  with \"x\"", "a=ax", MATCH, "a ends with \"x\""},
    {"a endswith \"x\"", "a=xa", NO_MATCH, "a ends with \"x\""},
    {"a endswith\"x\"", "a=x", MATCH, "a ends with \"x\""},
    {"a starts with\"x\"", "a=x", MATCH, "a starts with \"x\""},
    {"in == \"x\"", "in=x", MATCH, "in == \"x\""},
    {"notin == \"x\"", "notin=x", MATCH, "notin == \"x\""},
    {"not == \"x\"", "not=x", MATCH, "not == \"x\""},
    {"has == \"x\"", "has=x", MATCH, "has == \"x\""},
    {"all == \"x\"", "all=x", MATCH, "all == \"x\""},
    {"global != \"x\"", "", MATCH, "global != \"x\""},
    {"contains contains \"contains\"", "contains=xcontainsx", MATCH,
     "contains contains \"contains\""},
    {"startswith starts with \"value\"", "startswith=value1", MATCH,
     "startswith starts with \"value\""},
    {"endswith ends with \"value\"", "endswith=1value", MATCH, "endswith ends with \"value\""},
    {"in in {\"in\"}", "in=in", MATCH, "in in {\"in\"}"},
    {"not not in {\"x\"}", "not=y", MATCH, "not not in {\"x\"}"},
    {"has(in)", "in=", MATCH, "has(in)"},
    {"has(has)", "has=1", MATCH, "has(has)"},
    {"a == \"x\" && in != \"y\"", "a=x", MATCH, "(a == \"x\" && in != \"y\")"},
    {"ALL == \"x\"", "ALL=x", MATCH, "ALL == \"x\""},
    {"calico/k8s_ns == \"kube-system\" && k8s-app == \"kube-dns\"",
     "calico/k8s_ns=kube-system;k8s-app=kube-dns", MATCH,
     "(calico/k8s_ns == \"kube-system\" && k8s-app == \"kube-dns\")"},
    {"has(calico/k8s_ns)", "calico/k8s_ns=x", MATCH, "has(calico/k8s_ns)"},
    {"has(calico/k8s_NS-.1/role)", "calico/k8s_NS-.1/role=", MATCH, "has(calico/k8s_NS-.1/role)"},
    {"1abc == \"x\"", "1abc=x", MATCH, "1abc == \"x\""},
    {"-a == \"x\"", "-a=x", MATCH, "-a == \"x\""},
    {".a == \"x\"", ".a=x", MATCH, ".a == \"x\""},
    {"_ == \"x\"", "_=x", MATCH, "_ == \"x\""},
    {"/ == \"x\"", "/=x", MATCH, "/ == \"x\""},
    {"a.b/c-d_e == \"x\"", "a.b/c-d_e=x", MATCH, "a.b/c-d_e == \"x\""},
    {"A == \"x\"", "a=x", NO_MATCH, "A == \"x\""},
    {"projectcalico.org/namespace == \"default\"", "projectcalico.org/namespace=default", MATCH,
     NULL},
    {"has( a )", "a=1", MATCH, "has(a)"},
    {"has(\ta\t)", "a=1", MATCH, "has(a)"},
    {"has(a )", "", NO_MATCH, "has(a)"},
    {"has( a)", "", NO_MATCH, "has(a)"},
    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa == \"x\"",
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=x",
     MATCH,
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa == \"x\""},
    {"has("
     "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
     "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
     "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
     "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
     "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
     "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb)",
     "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
     "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
     "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
     "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
     "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
     "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb=",
     MATCH,
     "has("
     "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
     "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
     "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
     "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
     "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
     "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb)"},
    {"!!has(b)", "a=b", NO_MATCH, "has(b)"},
    {"! has(a)", "a=b", NO_MATCH, "!has(a)"},
    {"!!! has(a)", "a=b", NO_MATCH, "!has(a)"},
    {"!!!has(a)", "b=b", MATCH, "!has(a)"},
    {"!! ! has(a)", "a=b", NO_MATCH, "!has(a)"},
    {"! !!has(a)", "a=b", NO_MATCH, "!has(a)"},
    {"!!a == \"x\"", "a=x", MATCH, "a == \"x\""},
    {"!!!!a == \"x\"", "a=x", MATCH, "a == \"x\""},
    {"!a == \"x\"", "a=x", NO_MATCH, "!a == \"x\""},
    {"!a == \"x\"", "", MATCH, NULL},
    {"!a != \"x\"", "", NO_MATCH, "!a != \"x\""},
    {"!a != \"x\"", "a=x", MATCH, NULL},
    {"!(a == \"x\")", "a=x", NO_MATCH, "!a == \"x\""},
    {"!(a == \"x\")", "a=y", MATCH, NULL},
    {"!((a == \"x\"))", "a=y", MATCH, "!a == \"x\""},
    {"(!a == \"x\")", "a=y", MATCH, "!a == \"x\""},
    {"!(!a == \"x\")", "a=x", MATCH, "!!a == \"x\""},
    {"!(!a == \"x\")", "a=y", NO_MATCH, NULL},
    {"!(!has(a))", "a=1", MATCH, "!!has(a)"},
    {"!!(a == \"x\")", "a=x", MATCH, "a == \"x\""},
    {"!all()", "a=b", NO_MATCH, "!all()"},
    {"!!all()", "a=b", MATCH, "all()"},
    {"!(!has(a) || has(b))", "a=a", MATCH, "!(!has(a) || has(b))"},
    {"!(has(b) || !has(a))", "a=a", MATCH, "!(has(b) || !has(a))"},
    {"! (has( b)||! has(a ))", "a=a", MATCH, "!(has(b) || !has(a))"},
    {"! (a == \"b\"&&! c != \"d\")", "a=b;c=d", NO_MATCH, "!(a == \"b\" && !c != \"d\")"},
    {"! (a == \"b\"&&! c != \"d\")", "a=b", MATCH, NULL},
    {"!a == \"x\" && b == \"y\"", "a=z;b=y", MATCH, "(!a == \"x\" && b == \"y\")"},
    {"!a == \"x\" && b == \"y\"", "a=x;b=y", NO_MATCH, NULL},
    {"!(a == \"x\" && b == \"y\")", "a=x;b=y", NO_MATCH, "!(a == \"x\" && b == \"y\")"},
    {"!(a == \"x\" && b == \"y\")", "a=x", MATCH, NULL},
    {"!(a == \"x\" || b == \"y\")", "b=y", NO_MATCH, "!(a == \"x\" || b == \"y\")"},
    {"!(a == \"x\" || b == \"y\")", "", MATCH, NULL},
    {"has(a) && !has(b)", "a=a", MATCH, "(has(a) && !has(b))"},
    {"!has(b) && has(a)", "a=a", MATCH, "(!has(b) && has(a))"},
    {"!has(b) && has(a)", "a=a;b=b", NO_MATCH, NULL},
    {"! a == 'a1' || ! b == 'b1'", "a=a1;b=b1", NO_MATCH, "(!a == \"a1\" || !b == \"b1\")"},
    {"! a == 'a1' || ! b == 'b1'", "a=a1", MATCH, NULL},
    {"a != 'a1' && !b == 'b1'", "a=a1;b=b1", NO_MATCH, "(a != \"a1\" && !b == \"b1\")"},
    {"a == \"b\" && c == \"d\"", "a=b;c=d", MATCH, "(a == \"b\" && c == \"d\")"},
    {"a == \"b\" && c == \"d\"", "a=b;c=e", NO_MATCH, NULL},
    {"a == \"b\" && c == \"d\"", "a=c;c=d", NO_MATCH, NULL},
    {"a == \"b\" && c == \"d\"", "c=d", NO_MATCH, NULL},
    {"a == \"b\" && c == \"d\"", "a=b", NO_MATCH, NULL},
    {"a == \"b\" && c == \"d\"", "", NO_MATCH, NULL},
    {"a == \"b\" || c == \"d\"", "a=b;c=d", MATCH, "(a == \"b\" || c == \"d\")"},
    {"a == \"b\" || c == \"d\"", "a=b", MATCH, NULL},
    {"a == \"b\" || c == \"d\"", "c=d", MATCH, NULL},
    {"a == \"b\" || c == \"d\"", "a=e;c=e", NO_MATCH, NULL},
    {"a == \"b\" || c == \"d\"", "", NO_MATCH, NULL},
    {"a == 'a1' && b == 'b1'", "a=a1;b=b1", MATCH, "(a == \"a1\" && b == \"b1\")"},
    {"a == 'a1' && b != 'b1'", "a=a1;b=b1", NO_MATCH, NULL},
    {"a != 'a1' && b == 'b1'", "a=a1;b=b1", NO_MATCH, NULL},
    {"a != 'a1' && b != 'b1'", "a=a1;b=b1", NO_MATCH, NULL},
    {"a == 'a1' || b == 'b1'", "a=a1;b=b1", MATCH, NULL},
    {"a == 'a1' || b != 'b1'", "a=a1;b=b1", MATCH, NULL},
    {"a != 'a1' || b == 'b1'", "a=a1;b=b1", MATCH, NULL},
    {"a != 'a1' || b != 'b1'", "a=a1;b=b1", NO_MATCH, "(a != \"a1\" || b != \"b1\")"},
    {"a == \"1\" && b == \"2\" && c == \"3\"", "a=1;b=2;c=3", MATCH,
     "(a == \"1\" && b == \"2\" && c == \"3\")"},
    {"a == \"1\" && b == \"2\" && c == \"3\"", "a=1;b=2", NO_MATCH, NULL},
    {"(a == \"1\" && b == \"2\") && c == \"3\"", "a=1;b=2;c=3", MATCH,
     "((a == \"1\" && b == \"2\") && c == \"3\")"},
    {"a == \"1\" && (b == \"2\" && c == \"3\")", "a=1;b=2;c=3", MATCH,
     "(a == \"1\" && (b == \"2\" && c == \"3\"))"},
    {"a == \"1\" || b == \"2\" || c == \"3\"", "c=3", MATCH,
     "(a == \"1\" || b == \"2\" || c == \"3\")"},
    {"(a == \"1\" || b == \"2\") || c == \"3\"", "b=2", MATCH,
     "((a == \"1\" || b == \"2\") || c == \"3\")"},
    {"a == \"1\" || b == \"2\" && c == \"3\"", "a=1", MATCH,
     "(a == \"1\" || (b == \"2\" && c == \"3\"))"},
    {"a == \"1\" || b == \"2\" && c == \"3\"", "b=2", NO_MATCH, NULL},
    {"a == \"1\" || b == \"2\" && c == \"3\"", "b=2;c=3", MATCH, NULL},
    {"a == \"1\" && b == \"2\" || c == \"3\"", "c=3", MATCH,
     "((a == \"1\" && b == \"2\") || c == \"3\")"},
    {"a == \"1\" && b == \"2\" || c == \"3\"", "a=1", NO_MATCH, NULL},
    {"a == \"1\" && (b == \"2\" || c == \"3\")", "a=1;c=3", MATCH,
     "(a == \"1\" && (b == \"2\" || c == \"3\"))"},
    {"a == \"1\" && (b == \"2\" || c == \"3\")", "c=3", NO_MATCH, NULL},
    {"(a == \"1\")", "a=1", MATCH, "a == \"1\""},
    {"((a == \"1\"))", "a=1", MATCH, "a == \"1\""},
    {"(((has(a))))", "a=1", MATCH, "has(a)"},
    {"(a == \"1\") && (b == \"2\")", "a=1;b=2", MATCH, "(a == \"1\" && b == \"2\")"},
    {"(a == \"1\" || b == \"2\") && (c == \"3\" || d == \"4\")", "b=2;d=4", MATCH,
     "((a == \"1\" || b == \"2\") && (c == \"3\" || d == \"4\"))"},
    {"(a == \"1\" || b == \"2\") && (c == \"3\" || d == \"4\")", "b=2", NO_MATCH, NULL},
    {"a == \"1\" && b == \"2\" || c == \"3\" && d == \"4\"", "c=3;d=4", MATCH,
     "((a == \"1\" && b == \"2\") || (c == \"3\" && d == \"4\"))"},
    {"a == \"1\" && b == \"2\" || c == \"3\" && d == \"4\"", "a=1;d=4", NO_MATCH, NULL},
    {"has(a) && has(b) && has(c) || has(d)", "d=", MATCH,
     "((has(a) && has(b) && has(c)) || has(d))"},
    {"all() && has(a)", "a=", MATCH, "(all() && has(a))"},
    {"all() || has(a)", "", MATCH, "(all() || has(a))"},
    {"!all() || has(a)", "", NO_MATCH, "(!all() || has(a))"},
    {"global() && !has(a)", "", MATCH, "(global() && !has(a))"},
    {"!(!(k == 'v' && has(t) || all()) && (a in {'b', 'c'}))", "a=b", MATCH,
     "!(!((k == \"v\" && has(t)) || all()) && a in {\"b\", \"c\"})"},
    {"(a==\"1\"&&b==\"2\")||c==\"3\"", "c=3", MATCH, "((a == \"1\" && b == \"2\") || c == \"3\")"},
    {"a==\"1\"&&!b==\"2\"", "a=1;b=3", MATCH, "(a == \"1\" && !b == \"2\")"},
    {"a in {\"1\",\"2\"}||b not in{\"x\"}", "b=x", NO_MATCH,
     "(a in {\"1\", \"2\"} || b not in {\"x\"})"},
    {"a in {\"1\",\"2\"}||b not in{\"x\"}", "a=2;b=x", MATCH, NULL},
    {"has(a)&&has(b)", "a=;b=", MATCH, "(has(a) && has(b))"},
    {"!has(a)||!has(b)", "a=;b=", NO_MATCH, "(!has(a) || !has(b))"},
    {"a contains \"x\" && a starts with \"x\" && a ends with \"y\"", "a=xzy", MATCH,
     "(a contains \"x\" && a starts with \"x\" && a ends with \"y\")"},
    {"a contains \"x\" && a starts with \"x\" && a ends with \"y\"", "a=zxy", NO_MATCH, NULL},
    {"k == \"v\" || has(x)", "x=", MATCH, "(k == \"v\" || has(x))"},
    {"role == \"db\" && tier in {\"backend\", \"data\"} && !has(quarantine)", "role=db;tier=data",
     MATCH, "(role == \"db\" && tier in {\"backend\", \"data\"} && !has(quarantine))"},
    {"role == \"db\" && tier in {\"backend\", \"data\"} && !has(quarantine)",
     "role=db;tier=data;quarantine=", NO_MATCH, NULL},
    {"b == b", "", FAILS, NULL},
    {"b contains b", "", FAILS, NULL},
    {"b starts with b", "", FAILS, NULL},
    {"b ends with b", "", FAILS, NULL},
    {"'b1' == b", "", FAILS, NULL},
    {"\"b\" == a", "", FAILS, NULL},
    {"a == b", "", FAILS, NULL},
    {"b", "", FAILS, NULL},
    {"a b", "", FAILS, NULL},
    {"!", "", FAILS, NULL},
    {"!!", "", FAILS, NULL},
    {"foo == \"bar\" &", "", FAILS, NULL},
    {"foo == \"bar\" |", "", FAILS, NULL},
    {"foo != ||", "", FAILS, NULL},
    {"foo in {\"\", ||", "", FAILS, NULL},
    {"foo in \"\"", "", FAILS, NULL},
    {"\"FOO", "", FAILS, NULL},
    {"\"FOO'", "", FAILS, NULL},
    {"'FOO", "", FAILS, NULL},
    {"'FOO\"", "", FAILS, NULL},
    {"(", "", FAILS, NULL},
    {"(a == \"foo\"", "", FAILS, NULL},
    {")", "", FAILS, NULL},
    {"()", "", FAILS, NULL},
    {"%", "", FAILS, NULL},
    {"a == \"b\" && %", "", FAILS, NULL},
    {"a == \"b\" || %", "", FAILS, NULL},
    {"a ", "", FAILS, NULL},
    {"has(foo) &&", "", FAILS, NULL},
    {"has(foo) ||", "", FAILS, NULL},
    {"&& has(foo)", "", FAILS, NULL},
    {"|| has(foo)", "", FAILS, NULL},
    {"a == \"x\" && && b == \"y\"", "", FAILS, NULL},
    {"a = \"x\"", "", FAILS, NULL},
    {"a & b", "", FAILS, NULL},
    {"has(a) & has(b)", "", FAILS, NULL},
    {"has(a) | has(b)", "", FAILS, NULL},
    {"a == \"x\"\n", "", FAILS, NULL},
    {"\na == \"x\"", "", FAILS, NULL},
    {"a ==\n\"x\"", "", FAILS, NULL},
    {"a == \"x\" &&\nb == \"y\"", "", FAILS, NULL},
    {"a == \"x\"\r", "", FAILS, NULL},
    {"a\v== \"x\"", "", FAILS, NULL},
    {"a == \"x\";", "", FAILS, NULL},
    {"a == \"x\" b == \"y\"", "", FAILS, NULL},
    {"a == \"x\" has(b)", "", FAILS, NULL},
    {"a == \"x\")", "", FAILS, NULL},
    {"(a == \"x\"))", "", FAILS, NULL},
    {"((a == \"x\")", "", FAILS, NULL},
    {"a == ", "", FAILS, NULL},
    {"a ==", "", FAILS, NULL},
    {"a !=", "", FAILS, NULL},
    {"a in", "", FAILS, NULL},
    {"a in {", "", FAILS, NULL},
    {"a in {\"x\"", "", FAILS, NULL},
    {"a in {\"x\",", "", FAILS, NULL},
    {"a in {,}", "", FAILS, NULL},
    {"a in {\"x\",,}", "", FAILS, NULL},
    {"a in {\"x\" \"y\"}", "", FAILS, NULL},
    {"a in {\"x\";\"y\"}", "", FAILS, NULL},
    {"a in (\"x\")", "", FAILS, NULL},
    {"a in {x}", "", FAILS, NULL},
    {"a in {\"x\"}}", "", FAILS, NULL},
    {"a in \"x\"", "", FAILS, NULL},
    {"a not in \"x\"", "", FAILS, NULL},
    {"a notin \"x\"", "", FAILS, NULL},
    {"a inf {\"x\"}", "", FAILS, NULL},
    {"a in_ {\"x\"}", "", FAILS, NULL},
    {"a ends withs \"x\"", "", FAILS, NULL},
    {"a startswithx \"y\"", "", FAILS, NULL},
    {"a containsx \"y\"", "", FAILS, NULL},
    {"a notinx {\"x\"}", "", FAILS, NULL},
    {"a not x {\"x\"}", "", FAILS, NULL},
    {"a not", "", FAILS, NULL},
    {"a starts", "", FAILS, NULL},
    {"a starts \"x\"", "", FAILS, NULL},
    {"a ends \"x\"", "", FAILS, NULL},
    {"a starts foo \"value\"", "", FAILS, NULL},
    {"a ends foo \"value\"", "", FAILS, NULL},
    {"a squiggles \"value\"", "", FAILS, NULL},
    {"a startswith", "", FAILS, NULL},
    {"a contains", "", FAILS, NULL},
    {"a STARTS WITH \"x\"", "", FAILS, NULL},
    {"a Contains \"x\"", "", FAILS, NULL},
    {"a IN {\"x\"}", "", FAILS, NULL},
    {"a NOT IN {\"x\"}", "", FAILS, NULL},
    {"a == \"x\" || b", "", FAILS, NULL},
    {"a === \"x\"", "", FAILS, NULL},
    {"a !== \"x\"", "", FAILS, NULL},
    {"a ! = \"x\"", "", FAILS, NULL},
    {"a =! \"x\"", "", FAILS, NULL},
    {"a => \"x\"", "", FAILS, NULL},
    {"a < \"x\"", "", FAILS, NULL},
    {"has()", "", FAILS, NULL},
    {"has( )", "", FAILS, NULL},
    {"has(a", "", FAILS, NULL},
    {"has(a b)", "", FAILS, NULL},
    {"has(\"a\")", "", FAILS, NULL},
    {"has(a) b", "", FAILS, NULL},
    {"has(a,b)", "", FAILS, NULL},
    {"has (a)", "", FAILS, NULL},
    {"HAS(a)", "", FAILS, NULL},
    {"Has(a)", "", FAILS, NULL},
    {"all", "", FAILS, NULL},
    {"all(a)", "", FAILS, NULL},
    {"all (  )", "", FAILS, NULL},
    {"ALL()", "", FAILS, NULL},
    {"All()", "", FAILS, NULL},
    {"global", "", FAILS, NULL},
    {"global(x)", "", FAILS, NULL},
    {"GLOBAL()", "", FAILS, NULL},
    {"all())", "", FAILS, NULL},
    {"all() all()", "", FAILS, NULL},
    {"all() && ", "", FAILS, NULL},
    {"a == \"x\" && ()", "", FAILS, NULL},
    {"!(a == \"x\"", "", FAILS, NULL},
    {"(!)", "", FAILS, NULL},
    {"!()", "", FAILS, NULL},
    {"a == \"x\" !", "", FAILS, NULL},
    {"a == \"x\" !b == \"y\"", "", FAILS, NULL},
    {"a ! == \"x\"", "", FAILS, NULL},
    {"{\"x\"}", "", FAILS, NULL},
    {"a == {\"x\"}", "", FAILS, NULL},
    {"a != {\"x\"}", "", FAILS, NULL},
    {"a contains {\"x\"}", "", FAILS, NULL},
    {"a == \"x\" , b == \"y\"", "", FAILS, NULL},
    {"a:b == \"x\"", "", FAILS, NULL},
    {"a b == \"x\"", "", FAILS, NULL},
    {"\303\251 == \"x\"", "", FAILS, NULL},
    {"a@b == \"x\"", "", FAILS, NULL},
    {"a == \"x\" # comment", "", FAILS, NULL},
    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa == \"x\"",
     "", FAILS, NULL},
    {"has("
     "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
     "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
     "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
     "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
     "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
     "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb)",
     "", FAILS, NULL},
    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaain {\"x\"}",
     "", FAILS, NULL},
    {"a == \"unterminated", "", FAILS, NULL},
    {"a == 'unterminated", "", FAILS, NULL},
    {"a == \"x\" && b == \"y", "", FAILS, NULL},
    {"!has(a) &&& has(b)", "", FAILS, NULL},
    {"has(a) ||| has(b)", "", FAILS, NULL},
};

#define NCASES (sizeof cases / sizeof cases[0])

/* ---- helpers ---- */

/* A label set from "k=v;k2=v2", built through policy_labels_from_json(). */
static void labels_from_spec(const char *spec, struct policy_labels *out)
{
	json_t *obj = json_object();
	char *copy = strdup(spec);
	char *save = NULL;
	char err[256];

	assert_non_null(obj);
	assert_non_null(copy);
	for (char *item = strtok_r(copy, ";", &save); item != NULL;
	     item = strtok_r(NULL, ";", &save)) {
		char *eq = strchr(item, '=');
		assert_non_null(eq);
		*eq = '\0';
		assert_int_equal(json_object_set_new(obj, item, json_string(eq + 1)), 0);
	}
	assert_int_equal(policy_labels_from_json(obj, out, err, sizeof err), 0);
	json_decref(obj);
	free(copy);
}

static struct policy_selector *parse_ok(const char *text)
{
	struct policy_selector *s = NULL;
	char err[256] = "";
	size_t off = 0;
	int rv = policy_selector_parse(text, &s, &off, err, sizeof err);

	if (rv != 0)
		fail_msg("selector [%s] failed: %s", text, err);
	assert_non_null(s);
	return s;
}

/* The canonical form parses, and parses to itself. The one exception is Calico's own: the NOT
 * of a parenthesised NOT ("!(!a == \"x\")") prints as "!!a == \"x\"", which reads back as an
 * even run of '!', so there the second generation is the fixed point. */
static void check_canonical_stable(const struct policy_selector *s, const char *what)
{
	const char *c1 = policy_selector_canonical(s);
	struct policy_selector *s2 = parse_ok(c1);
	const char *c2 = policy_selector_canonical(s2);
	struct policy_selector *s3 = parse_ok(c2);

	if (strstr(c1, "!!") == NULL) {
		if (strcmp(c1, c2) != 0)
			fail_msg("[%s]: canonical [%s] re-parses as [%s]", what, c1, c2);
		assert_string_equal(policy_selector_uid(s), policy_selector_uid(s2));
	}
	assert_string_equal(policy_selector_canonical(s3), c2);
	policy_selector_free(s2);
	policy_selector_free(s3);
}

/* ---- the table ---- */

static void test_table(void **state)
{
	unsigned fails = 0;
	(void)state;

	for (size_t i = 0; i < NCASES; i++) {
		const struct sel_case *c = &cases[i];
		struct policy_selector *s = NULL;
		char err[256] = "";
		size_t off = (size_t)-1;
		int rv = policy_selector_parse(c->sel, &s, &off, err, sizeof err);

		if (c->want == FAILS) {
			char prefix[64];

			if (rv != -EINVAL)
				fail_msg("case %zu [%s]: parsed as [%s], should fail", i, c->sel,
				         rv == 0 ? policy_selector_canonical(s) : "?");
			assert_null(s);
			/* The message says where, and that is where err_offset points. */
			assert_true(off <= strlen(c->sel));
			snprintf(prefix, sizeof prefix, "at column %zu: ", off + 1);
			if (strncmp(err, prefix, strlen(prefix)) != 0)
				fail_msg("case %zu [%s]: error [%s] does not start with [%s]", i,
				         c->sel, err, prefix);
			assert_null(strchr(err, '\n'));
			fails++;
			continue;
		}
		if (rv != 0)
			fail_msg("case %zu [%s]: %s", i, c->sel, err);
		if (c->canonical != NULL && strcmp(policy_selector_canonical(s), c->canonical) != 0)
			fail_msg("case %zu [%s]: canonical [%s], want [%s]", i, c->sel,
			         policy_selector_canonical(s), c->canonical);
		{
			struct policy_labels l;
			struct policy_selector *again;

			labels_from_spec(c->labels, &l);
			if (policy_selector_match_labels(s, &l) != (c->want == MATCH))
				fail_msg("case %zu [%s] over {%s}: want %s", i, c->sel, c->labels,
				         c->want == MATCH ? "match" : "no match");
			/* Its canonical form means the same. */
			again = parse_ok(policy_selector_canonical(s));
			assert_int_equal(policy_selector_match_labels(again, &l), c->want == MATCH);
			policy_selector_free(again);
			policy_labels_free(&l);
		}
		check_canonical_stable(s, c->sel);
		assert_int_equal(strlen(policy_selector_uid(s)), POLICY_UID_LEN - 1);
		assert_int_equal(strncmp(policy_selector_uid(s), "s:", 2), 0);
		policy_selector_free(s);
	}
	assert_true(NCASES >= 250);
	assert_true(fails >= 100);
}

/* ---- random label sets over every case ---- */

static const char *const keys[] = {"a",  "b",   "c",   "d",    "k",    "t",          "x",
                                   "in", "not", "has", "role", "tier", "quarantine", "contains"};
static const char *const values[] = {"",    "a",   "b",    "c",  "d",   "e",          "x",  "y",
                                     "1",   "2",   "3",    "a1", "b1",  "'",          "\"", "it\"s",
                                     "xzy", "bab", "data", "db", "aaa", "kube-system"};
#define NKEYS   (sizeof keys / sizeof keys[0])
#define NVALUES (sizeof values / sizeof values[0])

static void random_labels(unsigned *seed, struct policy_labels *out)
{
	json_t *obj = json_object();
	char err[128];

	for (size_t k = 0; k < NKEYS; k++)
		if (rand_r(seed) % 3 == 0)
			json_object_set_new(obj, keys[k],
			                    json_string(values[rand_r(seed) % NVALUES]));
	assert_int_equal(policy_labels_from_json(obj, out, err, sizeof err), 0);
	json_decref(obj);
}

/* Over random label sets: the canonical form matches exactly what the original does, and
 * "!(S)" exactly what S does not (the negation property of Felix's selector tests). */
static void test_random_labels(void **state)
{
	unsigned seed = 4242;
	(void)state;

	for (size_t i = 0; i < NCASES; i++) {
		const struct sel_case *c = &cases[i];
		struct policy_selector *s, *canon, *neg = NULL;
		char *negated;

		if (c->want == FAILS)
			continue;
		s = parse_ok(c->sel);
		canon = parse_ok(policy_selector_canonical(s));
		assert_true(asprintf(&negated, "!(%s)", c->sel) > 0);
		if (strspn(c->sel, " \t") != strlen(c->sel))
			neg = parse_ok(negated);
		for (int r = 0; r < 60; r++) {
			struct policy_labels l;
			bool m;

			random_labels(&seed, &l);
			m = policy_selector_match_labels(s, &l);
			assert_int_equal(policy_selector_match_labels(canon, &l), m);
			if (neg != NULL)
				assert_int_equal(policy_selector_match_labels(neg, &l), !m);
			policy_labels_free(&l);
		}
		free(negated);
		policy_selector_free(neg);
		policy_selector_free(canon);
		policy_selector_free(s);
	}
}

/* ---- generated selectors, against an independent evaluator and printer ---- */

#define NSETS 32

struct gen {
	unsigned seed;
	/* NSETS label sets, as value-or-NULL per key. */
	const char *lv[NSETS][8];
};

static const char *const gkeys[] = {"a", "b", "in", "has", "not", "all", "k8s-app", "x.y/z"};
static const char *const gvalues[] = {"", "a", "b", "ab", "ba", "x\"y", "x'y", "\303\251", " "};
#define NGKEYS   8
#define NGVALUES (sizeof gvalues / sizeof gvalues[0])

struct text {
	char *src;   /* surface text */
	char *canon; /* expected canonical form */
};

static int rnd(struct gen *g, int n)
{
	return rand_r(&g->seed) % n;
}

static const char *ws(struct gen *g)
{
	static const char *const w[] = {"", " ", "\t", "  ", " \t "};
	return w[rnd(g, 5)];
}

static const char *ws1(struct gen *g)
{
	static const char *const w[] = {" ", "\t", "  "};
	return w[rnd(g, 3)];
}

static char *cat(char *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *cat(char *a, const char *fmt, ...)
{
	char *b;
	char *r;
	va_list ap;

	va_start(ap, fmt);
	assert_true(vasprintf(&b, fmt, ap) >= 0);
	va_end(ap);
	assert_true(asprintf(&r, "%s%s", a != NULL ? a : "", b) >= 0);
	free(a);
	free(b);
	return r;
}

static char quote_for(struct gen *g, const char *v)
{
	if (strchr(v, '"') != NULL)
		return '\'';
	if (strchr(v, '\'') != NULL)
		return '"';
	return rnd(g, 2) ? '"' : '\'';
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static uint32_t gen_or(struct gen *g, int depth, struct text *t);
static uint32_t gen_and(struct gen *g, int depth, struct text *t);

/* A comparison, function or parenthesised group: its matches as a bit per label set. */
static uint32_t gen_operand(struct gen *g, int depth, struct text *t)
{
	int kind = rnd(g, depth > 0 ? 10 : 9);
	int k = rnd(g, NGKEYS);
	const char *key = gkeys[k];
	const char *v = gvalues[rnd(g, NGVALUES)];
	uint32_t bits = 0;
	char q = quote_for(g, v);
	char cq = strchr(v, '"') != NULL ? '\'' : '"';

	t->src = NULL;
	t->canon = NULL;
	switch (kind) {
	case 0:
		t->src = cat(NULL, "has(%s%s%s)", ws(g), key, ws(g));
		t->canon = cat(NULL, "has(%s)", key);
		for (int i = 0; i < NSETS; i++)
			bits |= (uint32_t)(g->lv[i][k] != NULL) << i;
		return bits;
	case 1:
		t->src = cat(NULL, rnd(g, 2) ? "all(%s)" : "global(%s)", ws(g));
		t->canon = strdup(t->src[0] == 'a' ? "all()" : "global()");
		return UINT32_MAX;
	case 2:
	case 3:
	case 4:
	case 5:
	case 6: {
		static const char *const ops[] = {"==", "!=", "contains", "starts with",
		                                  "ends with"};
		static const char *const alt[] = {"==", "!=", "contains", "startswith", "endswith"};
		int op = kind - 2;
		const char *sp = op >= 2 ? ws1(g) : ws(g);

		t->src = cat(NULL, "%s%s%s%s%c%s%c", key, sp, rnd(g, 2) ? ops[op] : alt[op], ws(g),
		             q, v, q);
		t->canon = cat(NULL, "%s %s %c%s%c", key, ops[op], cq, v, cq);
		for (int i = 0; i < NSETS; i++) {
			const char *l = g->lv[i][k];
			bool m = false;
			size_t ll = l != NULL ? strlen(l) : 0;

			switch (op) {
			case 0:
				m = l != NULL && strcmp(l, v) == 0;
				break;
			case 1:
				m = l == NULL || strcmp(l, v) != 0;
				break;
			case 2:
				m = l != NULL && strstr(l, v) != NULL;
				break;
			case 3:
				m = l != NULL && strncmp(l, v, strlen(v)) == 0;
				break;
			default:
				m = l != NULL && ll >= strlen(v) &&
				    strcmp(l + ll - strlen(v), v) == 0;
				break;
			}
			bits |= (uint32_t)m << i;
		}
		return bits;
	}
	case 7:
	case 8: {
		static const char *const notin[] = {"not in", "notin", "not \t in"};
		const char *members[6];
		int n = rnd(g, 5);
		int u = 0;
		bool not = kind == 8;

		t->src = cat(NULL, "%s%s%s%s{", key, ws1(g), not ? notin[rnd(g, 3)] : "in", ws(g));
		for (int i = 0; i < n; i++) {
			const char *m = gvalues[rnd(g, NGVALUES)];
			char mq = quote_for(g, m);
			t->src =
			    cat(t->src, "%s%s%c%s%c%s", i > 0 ? "," : "", ws(g), mq, m, mq, ws(g));
			members[i] = m;
		}
		if (n > 0 && rnd(g, 3) == 0)
			t->src = cat(t->src, ",");
		t->src = cat(t->src, "}");
		qsort(members, (size_t)n, sizeof members[0], str_cmp);
		t->canon = cat(NULL, "%s %s {", key, not ? "not in" : "in");
		for (int i = 0; i < n; i++) {
			char mq = strchr(members[i], '"') != NULL ? '\'' : '"';
			if (i > 0 && strcmp(members[i], members[i - 1]) == 0)
				continue;
			t->canon =
			    cat(t->canon, "%s%c%s%c", u++ > 0 ? ", " : "", mq, members[i], mq);
		}
		t->canon = cat(t->canon, "}");
		for (int i = 0; i < NSETS; i++) {
			const char *l = g->lv[i][k];
			bool in = false;
			for (int j = 0; l != NULL && j < n; j++)
				in = in || strcmp(l, members[j]) == 0;
			bits |= (uint32_t)(not ? l == NULL || !in : in) << i;
		}
		return bits;
	}
	default: {
		struct text inner;

		bits = gen_or(g, depth - 1, &inner);
		/* A group is its inner node. */
		t->src = cat(NULL, "(%s%s%s)", ws(g), inner.src, ws(g));
		t->canon = inner.canon;
		free(inner.src);
		return bits;
	}
	}
}

static uint32_t gen_unary(struct gen *g, int depth, struct text *t)
{
	int nots = rnd(g, 4) == 0 ? rnd(g, 4) : 0;
	struct text o;
	uint32_t bits = gen_operand(g, depth, &o);

	t->src = NULL;
	for (int i = 0; i < nots; i++)
		t->src = cat(t->src, "!%s", ws(g));
	t->src = cat(t->src, "%s", o.src);
	t->canon = nots % 2 ? cat(NULL, "!%s", o.canon) : strdup(o.canon);
	free(o.src);
	free(o.canon);
	return nots % 2 ? ~bits : bits;
}

static uint32_t gen_list(struct gen *g, int depth, struct text *t, bool or)
{
	int n = 1 + (rnd(g, 3) == 0 ? rnd(g, 3) + 1 : 0);
	uint32_t bits = or ? 0 : UINT32_MAX;

	t->src = NULL;
	t->canon = n > 1 ? strdup("(") : NULL;
	for (int i = 0; i < n; i++) {
		struct text e;
		uint32_t b = or ? gen_and(g, depth, &e) : gen_unary(g, depth, &e);

		bits = or ? bits | b : bits & b;
		if (i > 0) {
			t->src = cat(t->src, "%s%s%s", ws(g), or ? "||" : "&&", ws(g));
			t->canon = cat(t->canon, or ? " || " : " && ");
		}
		t->src = cat(t->src, "%s", e.src);
		t->canon = cat(t->canon, "%s", e.canon);
		free(e.src);
		free(e.canon);
	}
	if (n > 1)
		t->canon = cat(t->canon, ")");
	return bits;
}

static uint32_t gen_and(struct gen *g, int depth, struct text *t)
{
	return gen_list(g, depth, t, false);
}

static uint32_t gen_or(struct gen *g, int depth, struct text *t)
{
	return gen_list(g, depth, t, true);
}

static bool get_gen(void *ctx, const char *key, const char **out);

struct gen_ctx {
	struct gen *g;
	int set;
};

static const char *gen_label(void *ctx, const char *key)
{
	const char *v = NULL;
	get_gen(ctx, key, &v);
	return v;
}

static bool get_gen(void *ctx, const char *key, const char **out)
{
	struct gen_ctx *c = ctx;

	for (int k = 0; k < NGKEYS; k++)
		if (strcmp(gkeys[k], key) == 0) {
			*out = c->g->lv[c->set][k];
			return true;
		}
	return false;
}

/* Random selectors in random spellings (spacing, quotes, operator forms, duplicate and
 * unsorted set members, trailing commas, redundant parentheses and '!' runs): each parses, has
 * the canonical form an independent printer expects, and matches exactly the label sets an
 * independent evaluator says, through both match functions. */
static void test_generated(void **state)
{
	struct gen g = {.seed = 7};
	(void)state;

	for (int round = 0; round < 3000; round++) {
		struct text t;
		uint32_t want;
		struct policy_selector *s;

		for (int i = 0; i < NSETS; i++)
			for (int k = 0; k < NGKEYS; k++)
				g.lv[i][k] = rnd(&g, 2) ? gvalues[rnd(&g, NGVALUES)] : NULL;
		want = gen_or(&g, 3, &t);
		s = parse_ok(t.src);
		if (strcmp(policy_selector_canonical(s), t.canon) != 0)
			fail_msg("[%s]: canonical [%s], want [%s]", t.src,
			         policy_selector_canonical(s), t.canon);
		check_canonical_stable(s, t.src);
		const struct policy_selector_literal *lit;
		unsigned n_lits = policy_selector_literals(s, &lit);
		struct policy_selector *ls[64];
		assert_true(n_lits <= 64);
		for (unsigned k = 0; k < n_lits; k++) {
			ls[k] = parse_ok(lit[k].canonical);
			assert_string_equal(policy_selector_canonical(ls[k]), lit[k].canonical);
			assert_string_equal(policy_selector_uid(ls[k]), lit[k].uid);
			/* a test is its own literal: it does not split again */
			const struct policy_selector_literal *sub;
			assert_int_equal(policy_selector_literals(ls[k], &sub), 0);
		}
		for (int i = 0; i < NSETS; i++) {
			struct gen_ctx c = {&g, i};
			/* the literals decide as the selector does: every positive one matches and
			 * no negated one */
			bool all_lits = true;
			for (unsigned k = 0; k < n_lits; k++)
				all_lits = all_lits && policy_selector_match(ls[k], gen_label,
				                                             &c) != lit[k].negated;
			if (n_lits > 0 && all_lits != (bool)((want >> i) & 1))
				fail_msg("[%s] label set %d: literals say %d", t.src, i, all_lits);
			json_t *obj = json_object();
			struct policy_labels l;
			char err[64];
			bool m = (want >> i) & 1;

			if (policy_selector_match(s, gen_label, &c) != m)
				fail_msg("[%s] label set %d: want %d", t.src, i, m);
			for (int k = 0; k < NGKEYS; k++)
				if (g.lv[i][k] != NULL)
					json_object_set_new(obj, gkeys[k], json_string(g.lv[i][k]));
			assert_int_equal(policy_labels_from_json(obj, &l, err, sizeof err), 0);
			assert_int_equal(policy_selector_match_labels(s, &l), m);
			policy_labels_free(&l);
			json_decref(obj);
		}
		for (unsigned k = 0; k < n_lits; k++)
			policy_selector_free(ls[k]);
		policy_selector_free(s);
		free(t.src);
		free(t.canon);
	}
}

/* A conjunction of tests splits into its tests, each in its positive form; anything else does
 * not split. Expected: the literals as "canonical" or "!canonical", joined by " ; ". */
static void test_literals(void **state)
{
	static const char *const cases[][2] = {
	    {"a == 'x' && b != 'y'", "a == \"x\" ; !b == \"y\""},
	    {"a == 'x' && (b == 'y' && has(c))", "a == \"x\" ; b == \"y\" ; has(c)"},
	    {"!has(a)", "all() ; !has(a)"},
	    {"a != 'x'", "all() ; !a == \"x\""},
	    {"a not in {'y', 'x'}", "all() ; !a in {\"x\", \"y\"}"},
	    {"!(a not in {'x'}) && b starts with 'p'", "a in {\"x\"} ; b starts with \"p\""},
	    {"all() && a == 'x'", "a == \"x\""},
	    {"!(a == 'x') && !(b contains 'q')", "all() ; !a == \"x\" ; !b contains \"q\""},
	    {"has(a) && a ends with 'z' && a != 'z'", "has(a) ; a ends with \"z\" ; !a == \"z\""},
	    {"a == 'x'", ""},
	    {"has(a)", ""},
	    {"all()", ""},
	    {"", ""},
	    {"!(a != 'x')", "a == \"x\""},
	    {"a == 'x' || b == 'y'", ""},
	    {"a == 'x' && (b == 'y' || c == 'z')", ""},
	    {"a == 'x' && !(b == 'y' && c == 'z')", ""},
	    {"a == 'x' && global()", ""},
	    {"!all()", ""},
	};
	(void)state;

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct policy_selector *s = parse_ok(cases[i][0]);
		const struct policy_selector_literal *lit;
		unsigned n = policy_selector_literals(s, &lit);
		char got[512] = "";
		for (unsigned k = 0; k < n; k++)
			snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s%s",
			         k > 0 ? " ; " : "", lit[k].negated ? "!" : "", lit[k].canonical);
		if (strcmp(got, cases[i][1]) != 0)
			fail_msg("[%s]: literals [%s], want [%s]", cases[i][0], got, cases[i][1]);
		policy_selector_free(s);
	}
}

/* ---- random bytes ---- */

static void test_random_bytes(void **state)
{
	static const char alphabet[] = "abin has()all()global(){},\"'=!&| \t\nnotcontainsstarts"
	                               "endswith-./_\r%:";
	unsigned seed = 99;
	char text[64];
	(void)state;

	for (int round = 0; round < 30000; round++) {
		size_t len = (size_t)(rand_r(&seed) % (int)sizeof text);
		struct policy_selector *s = NULL;
		char err[128];
		size_t off = 0;
		int rv;

		for (size_t i = 0; i < len; i++) {
			int r = rand_r(&seed);
			text[i] = r % 8 == 0 ? (char)(1 + r % 255)
			                     : alphabet[(size_t)r % (sizeof alphabet - 1)];
		}
		text[len] = '\0';
		rv = policy_selector_parse(text, &s, &off, err, sizeof err);
		if (rv == 0) {
			check_canonical_stable(s, text);
			policy_selector_free(s);
		} else {
			char prefix[48];

			assert_int_equal(rv, -EINVAL);
			assert_null(s);
			assert_true(off <= len);
			snprintf(prefix, sizeof prefix, "at column %zu: ", off + 1);
			assert_int_equal(strncmp(err, prefix, strlen(prefix)), 0);
		}
	}
}

/* ---- messages, limits, UIDs, labels ---- */

static void expect_error(const char *text, size_t offset, const char *message)
{
	struct policy_selector *s = NULL;
	char err[256] = "";
	size_t off = 12345;

	assert_int_equal(policy_selector_parse(text, &s, &off, err, sizeof err), -EINVAL);
	assert_null(s);
	if (strcmp(err, message) != 0)
		fail_msg("[%s]: error [%s], want [%s]", text, err, message);
	assert_int_equal(off, offset);
}

static void test_errors(void **state)
{
	struct policy_selector *s = NULL;
	char small[12];
	(void)state;

	expect_error("a == b", 5, "at column 6: expected a quoted string after '==', found 'b'");
	expect_error("a == \"x\"\n", 8, "at column 9: unexpected newline");
	expect_error("\n", 0, "at column 1: unexpected newline");
	expect_error("a \"x", 2, "at column 3: unterminated string");
	expect_error("a == 'x", 5, "at column 6: unterminated string");
	expect_error("a ==", 4,
	             "at column 5: expected a quoted string after '==', found the end of the "
	             "selector");
	expect_error("a contains b", 11,
	             "at column 12: expected a quoted string after 'contains', found 'b'");
	expect_error("(a == \"x\"", 9,
	             "at column 10: expected ')' to close the '(' at column 1, found the end of "
	             "the selector");
	expect_error("a == \"x\")", 8, "at column 9: unmatched ')', found ')'");
	expect_error("a == \"x\" b", 9,
	             "at column 10: expected '&&', '||' or the end of the selector, found 'b'");
	expect_error("a inf {\"x\"}", 2,
	             "at column 3: expected an operator after the label 'a', found 'inf'");
	expect_error("a ends withs \"x\"", 2,
	             "at column 3: expected an operator after the label 'a', found 'ends withs'");
	expect_error("a in \"x\"", 5, "at column 6: expected '{' after 'in', found '\"x\"'");
	expect_error("a not in {,}", 10,
	             "at column 11: expected a quoted string or '}' in the set after 'not in', "
	             "found ','");
	expect_error("a in {\"x\" \"y\"}", 10,
	             "at column 11: expected ',' or '}' in the set after 'in', found '\"y\"'");
	expect_error("has()", 4, "at column 5: expected a label name inside has()");
	expect_error("has(a b)", 6, "at column 7: expected ')' to close has(");
	expect_error("all(x)", 4, "at column 5: expected ')' to close all(");
	expect_error("a = \"x\"", 2,
	             "at column 3: a single '=' is not an operator (did you mean '=='?)");
	expect_error("has(a) & has(b)", 7,
	             "at column 8: a single '&' is not an operator (did you mean '&&'?)");
	expect_error("a == \"x\" |", 9,
	             "at column 10: a single '|' is not an operator (did you mean '||'?)");
	expect_error("%", 0, "at column 1: unexpected character '%'");
	expect_error("a\r", 1, "at column 2: expected an operator after the label 'a', found '?'");
	expect_error("\r", 0, "at column 1: unexpected byte 0x0d");
	expect_error("&& a", 0,
	             "at column 1: expected a label, has(), all(), global(), '!' or '(', found "
	             "'&&'");
	expect_error("!", 1,
	             "at column 2: expected a label, has(), all(), global(), '!' or '(', found the "
	             "end of the selector");
	expect_error("HAS(a)", 3,
	             "at column 4: expected an operator (==, !=, in, not in, contains, starts "
	             "with, ends with) after the label 'HAS', found '('");

	/* No buffer, or a small one: still refused, never overrun. */
	assert_int_equal(policy_selector_parse("a ==", &s, NULL, NULL, 0), -EINVAL);
	assert_int_equal(policy_selector_parse("a ==", &s, NULL, small, sizeof small), -EINVAL);
	assert_int_equal(strlen(small), sizeof small - 1);
	assert_null(s);
}

static void test_limits(void **state)
{
	static char text[POLICY_SELECTOR_MAX + 16];
	char label[600];
	struct policy_selector *s = NULL;
	char err[256];
	size_t off;
	(void)state;

	/* Labels: 512 characters, not 513. */
	memset(label, 'k', 513);
	label[513] = '\0';
	snprintf(text, 700, "%s == \"v\"", label);
	assert_int_equal(policy_selector_parse(text, &s, &off, err, sizeof err), -EINVAL);
	assert_int_equal(off, 0);
	assert_non_null(strstr(err, "more than 512"));
	label[512] = '\0';
	snprintf(text, 700, "%s == \"v\"", label);
	s = parse_ok(text);
	policy_selector_free(s);

	/* Nesting: 256 levels of parentheses are fine, 257 and 1000 are refused. */
	for (int depth = 256; depth <= 1000; depth++) {
		size_t n = 0;

		for (int i = 0; i < depth; i++, n += 2)
			memcpy(text + n, "!(", 2);
		memcpy(text + n, "has(a)", 6);
		n += 6;
		memset(text + n, ')', (size_t)depth);
		text[n + (size_t)depth] = '\0';
		if (depth == 256) {
			struct policy_labels none = {0};

			s = parse_ok(text);
			/* 256 NOTs, each of a group: has(a) itself. */
			assert_false(policy_selector_match_labels(s, &none));
			policy_selector_free(s);
			continue;
		}
		assert_int_equal(policy_selector_parse(text, &s, &off, err, sizeof err), -EINVAL);
		assert_non_null(strstr(err, "nested more than 256"));
		assert_int_equal(off, 2 * 256 + 1);
		if (depth == 257)
			depth = 999;
	}

	/* A run of '!' is a parity, not a nesting: any length parses. */
	memset(text, '!', 60000);
	strcpy(text + 60000, "has(a)");
	s = parse_ok(text);
	assert_string_equal(policy_selector_canonical(s), "has(a)");
	policy_selector_free(s);

	/* Length: POLICY_SELECTOR_MAX bytes parse, one more is refused. */
	memset(text, ' ', POLICY_SELECTOR_MAX);
	memcpy(text, "a == \"", 6);
	memset(text + 6, 'x', 1000);
	text[1006] = '"';
	text[POLICY_SELECTOR_MAX] = '\0';
	s = parse_ok(text);
	policy_selector_free(s);
	text[POLICY_SELECTOR_MAX] = ' ';
	text[POLICY_SELECTOR_MAX + 1] = '\0';
	assert_int_equal(policy_selector_parse(text, &s, &off, err, sizeof err), -EINVAL);
	assert_int_equal(off, POLICY_SELECTOR_MAX);
}

static void test_big_set(void **state)
{
	size_t n = 0;
	static char text[POLICY_SELECTOR_MAX];
	struct policy_selector *s;
	char v[16];
	(void)state;

	/* 3000 members in descending order with every one twice: sorted, de-duplicated and
	 * searched. */
	n += (size_t)sprintf(text, "k in {");
	for (int i = 2999; i >= 0; i--)
		n += (size_t)sprintf(text + n, "\"v%04d\",'v%04d',", i, i);
	sprintf(text + n, "}");
	s = parse_ok(text);
	assert_int_equal(strncmp(policy_selector_canonical(s), "k in {\"v0000\", \"v0001\", ", 24),
	                 0);
	assert_int_equal(strlen(policy_selector_canonical(s)),
	                 strlen("k in {}") + 3000 * 7 + 2999 * 2);
	for (int i = -5; i < 3005; i += 7) {
		json_t *obj;
		struct policy_labels l;
		char err[64];

		snprintf(v, sizeof v, "v%04d", i < 0 ? 9000 - i : i);
		obj = json_pack("{s:s}", "k", v);
		assert_int_equal(policy_labels_from_json(obj, &l, err, sizeof err), 0);
		assert_int_equal(policy_selector_match_labels(s, &l), i >= 0 && i < 3000);
		policy_labels_free(&l);
		json_decref(obj);
	}
	policy_selector_free(s);
}

static void test_uids(void **state)
{
	static const char *const known[][2] = {
	    /* From Calico's parser_test.go canonicalisation table. */
	    {"", "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"},
	    {" all() ", "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"},
	    {" (all() )", "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"},
	    {"! (has( b)||! has(a ))", "s:Iss0uCleLYv1GSv_pNm7hAO58kE9jAx1NKyG3Q"},
	    {"! (a == \"b\"&&! c != \"d\")", "s:lh3haoY1ikTRkd4UZu0nWSaIBknYLPJLX16d-w"},
	};
	struct policy_selector *a, *b;
	(void)state;

	for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
		struct policy_selector *s = parse_ok(known[i][0]);
		assert_string_equal(policy_selector_uid(s), known[i][1]);
		policy_selector_free(s);
	}
	/* Equal canonical forms, equal UIDs; different ones differ. */
	a = parse_ok("b in {'y','x'} && a=='1'");
	b = parse_ok("(b in {\"x\", \"y\", \"x\",} && a == \"1\")");
	assert_string_equal(policy_selector_uid(a), policy_selector_uid(b));
	policy_selector_free(b);
	b = parse_ok("a == \"1\" && b in {\"x\", \"y\"}");
	assert_string_not_equal(policy_selector_uid(a), policy_selector_uid(b));
	policy_selector_free(a);
	policy_selector_free(b);
}

static void test_is_all(void **state)
{
	static const char *const yes[] = {"",         " ",       "all()",  " all( ) ",
	                                  "global()", "(all())", "!!all()"};
	static const char *const no[] = {"!all()", "all() && all()", "has(a)", "a != \"x\"",
	                                 "all() || global()"};
	(void)state;

	for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
		struct policy_selector *s = parse_ok(yes[i]);
		assert_true(policy_selector_is_all(s));
		policy_selector_free(s);
	}
	for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
		struct policy_selector *s = parse_ok(no[i]);
		assert_false(policy_selector_is_all(s));
		policy_selector_free(s);
	}
}

/* Inherited labels through a callback: own labels first, then a profile's (section 3.9). */
struct layered {
	const struct policy_labels *own, *profile;
	int calls;
};

static const char *layered_get(void *ctx, const char *key)
{
	struct layered *l = ctx;
	const char *v = policy_labels_get(l->own, key);

	l->calls++;
	return v != NULL ? v : policy_labels_get(l->profile, key);
}

static void test_match_callback(void **state)
{
	struct policy_labels own, profile;
	struct layered ctx;
	struct policy_selector *s;
	(void)state;

	labels_from_spec("role=web", &own);
	labels_from_spec("role=db;tier=front;web=", &profile);
	ctx = (struct layered){&own, &profile, 0};

	s = parse_ok("role == \"web\" && tier == \"front\" && has(web)");
	assert_true(policy_selector_match(s, layered_get, &ctx));
	assert_int_equal(ctx.calls, 3);
	policy_selector_free(s);

	/* Short-circuit: the first false operand of && ends it. */
	ctx.calls = 0;
	s = parse_ok("role == \"db\" && tier == \"front\"");
	assert_false(policy_selector_match(s, layered_get, &ctx));
	assert_int_equal(ctx.calls, 1);
	policy_selector_free(s);

	ctx.calls = 0;
	s = parse_ok("all() || has(x)");
	assert_true(policy_selector_match(s, layered_get, &ctx));
	assert_int_equal(ctx.calls, 0);
	policy_selector_free(s);

	policy_labels_free(&own);
	policy_labels_free(&profile);
}

static void test_labels(void **state)
{
	struct policy_labels l = {0};
	char err[256];
	json_t *v;
	(void)state;

	assert_int_equal(policy_labels_from_json(NULL, &l, err, sizeof err), 0);
	assert_int_equal(l.n, 0);
	assert_null(policy_labels_get(&l, "a"));
	v = json_null();
	assert_int_equal(policy_labels_from_json(v, &l, err, sizeof err), 0);
	assert_int_equal(l.n, 0);

	v = json_loads("{\"z\": \"1\", \"a\": \"\", \"m/x\": \"3\", \"B\": \"4\"}", 0, NULL);
	assert_int_equal(policy_labels_from_json(v, &l, err, sizeof err), 0);
	json_decref(v);
	assert_int_equal(l.n, 4);
	/* Sorted by key, byte order. */
	assert_string_equal(l.v[0].key, "B");
	assert_string_equal(l.v[1].key, "a");
	assert_string_equal(l.v[2].key, "m/x");
	assert_string_equal(l.v[3].key, "z");
	assert_string_equal(policy_labels_get(&l, "a"), "");
	assert_string_equal(policy_labels_get(&l, "z"), "1");
	assert_string_equal(policy_labels_get(&l, "B"), "4");
	assert_null(policy_labels_get(&l, "b"));
	assert_null(policy_labels_get(&l, ""));
	assert_null(policy_labels_get(&l, "zz"));
	policy_labels_free(&l);
	assert_int_equal(l.n, 0);
	policy_labels_free(&l);

	v = json_loads("{\"a\": \"x\", \"n\": 5}", 0, NULL);
	assert_int_equal(policy_labels_from_json(v, &l, err, sizeof err), -EINVAL);
	assert_string_equal(err, "label 'n': the value must be a string, not a number");
	assert_int_equal(l.n, 0);
	json_decref(v);
	v = json_loads("{\"a\": null}", 0, NULL);
	assert_int_equal(policy_labels_from_json(v, &l, err, sizeof err), -EINVAL);
	assert_string_equal(err, "label 'a': the value must be a string, not null");
	json_decref(v);
	v = json_loads("[\"a\"]", 0, NULL);
	assert_int_equal(policy_labels_from_json(v, &l, err, sizeof err), -EINVAL);
	assert_string_equal(err, "labels must be an object of string values, not an array");
	json_decref(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_table),     cmocka_unit_test(test_random_labels),
	    cmocka_unit_test(test_generated), cmocka_unit_test(test_random_bytes),
	    cmocka_unit_test(test_errors),    cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_big_set),   cmocka_unit_test(test_uids),
	    cmocka_unit_test(test_is_all),    cmocka_unit_test(test_match_callback),
	    cmocka_unit_test(test_labels),    cmocka_unit_test(test_literals),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

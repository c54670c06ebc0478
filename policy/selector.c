/*
 * The selector language (calico-behaviour.md section 4): parser, evaluator, canonical form and
 * UID.
 *
 * Parsing is a recursive descent over tokens lexed one at a time. The lexer needs one piece of
 * context, as Calico's does: whether the previous token was a label. Right after a label the
 * words in, not in, contains, starts with and ends with are operators; anywhere else a word is
 * a label (so a label may be spelt "in" or "has"), except that has(, all( and global( open the
 * three functions. Parsing builds a temporary tree (nodes in one growing array, linked by
 * index, strings as spans of the input: literals have no escapes, so every value is a slice of
 * the text). The tree mirrors Calico's AST: an and/or level with one operand is that operand, a
 * parenthesised group is its inner node, and a run of '!' is one NOT or none by its parity.
 *
 * The finished selector is one allocation: the nodes flattened in preorder, each knowing the
 * size of its subtree so an and/or walks its children by skipping, then the sorted set arrays,
 * then the strings. Evaluation walks that array and allocates nothing.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nettle/base64.h>
#include <nettle/sha2.h>

#include "policy/policy.h"

/* Labels are at most this long (Calico's [a-zA-Z0-9_./-]{1,512}). */
#define LABEL_MAX 512
/* Parentheses nested deeper than this are refused: the parser, the flattening and the printer
 * recurse once per level, and no real selector comes near it. */
#define DEPTH_MAX 256
/* How much of a token an error message quotes. */
#define QUOTE_MAX 40

enum op {
	OP_ALL,
	OP_GLOBAL,
	OP_HAS,
	OP_EQ,
	OP_NE,
	OP_CONTAINS,
	OP_STARTS,
	OP_ENDS,
	OP_IN,
	OP_NOTIN,
	OP_NOT,
	OP_AND,
	OP_OR,
};

/* A node of the finished selector. */
struct snode {
	uint8_t op;
	uint32_t size; /* nodes in this subtree, itself included */
	uint32_t n;    /* AND/OR: children; IN/NOTIN: set members; EQ...ENDS: value length */
	const char *key;
	const char *val;        /* EQ, NE, CONTAINS, STARTS, ENDS */
	const char *const *set; /* IN, NOTIN: sorted, unique */
};

struct policy_selector {
	const struct snode *nodes;
	uint32_t n;
	char *canonical;
	char uid[POLICY_UID_LEN];
	/* policy_selector_literals(): the tests of a conjunction, their strings in one block */
	struct policy_selector_literal *lits;
	unsigned n_lits;
};

/* ------------------------------------------------------------------------------------------ */
/* Lexer                                                                                       */

enum tok {
	T_EOF,
	T_LABEL,
	T_STRING,
	T_LBRACE,
	T_RBRACE,
	T_COMMA,
	T_EQ,
	T_NE,
	T_NOT,
	T_IN,
	T_NOTIN,
	T_CONTAINS,
	T_STARTS,
	T_ENDS,
	T_HAS,
	T_ALL,
	T_GLOBAL,
	T_LPAREN,
	T_RPAREN,
	T_AND,
	T_OR,
};

struct token {
	enum tok kind;
	size_t start, end; /* the token's text */
	size_t voff, vlen; /* LABEL, HAS: the label; STRING: the contents */
};

/* A node of the parse tree; strings are spans of the text. */
struct tnode {
	uint8_t op;
	uint32_t child;  /* first child (NOT, AND, OR), NONE if none */
	uint32_t next;   /* next sibling, NONE if none */
	uint32_t nchild; /* AND, OR */
	uint32_t koff, klen;
	uint32_t voff, vlen;
	uint32_t set, nset; /* IN, NOTIN: members spans[set .. set + nset) */
};

#define NONE UINT32_MAX

struct span {
	uint32_t off, len;
};

struct parser {
	const char *text;
	size_t len;
	size_t pos;       /* where the lexer continues */
	struct token tok; /* the lookahead */
	enum tok prev;    /* the kind of the token before the lookahead */
	int depth;
	struct tnode *nodes;
	uint32_t n, cap;
	struct span *spans;
	uint32_t nspans, capspans;
	bool failed;
	bool nomem;
	size_t err_off;
	char *err;
	size_t errlen;
};

static bool is_ident(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '.' || c == '/' || c == '-';
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t';
}

static int __attribute__((format(printf, 3, 4)))
fail(struct parser *p, size_t off, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (p->failed)
		return -1;
	p->failed = true;
	p->err_off = off;
	if (p->err == NULL || p->errlen == 0)
		return -1;
	n = snprintf(p->err, p->errlen, "at column %zu: ", off + 1);
	if (n >= 0 && (size_t)n < p->errlen) {
		va_start(ap, fmt);
		vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* Quote text[off, off+len) for a message: at most QUOTE_MAX bytes, control bytes as '?'. */
static void quote(const struct parser *p, size_t off, size_t len, char *buf, size_t size)
{
	size_t n = len > QUOTE_MAX ? QUOTE_MAX : len;
	size_t j = 0;

	for (size_t i = 0; i < n && j + 4 < size; i++) {
		unsigned char c = (unsigned char)p->text[off + i];
		buf[j++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	if (n < len && j + 4 < size) {
		memcpy(buf + j, "...", 3);
		j += 3;
	}
	buf[j] = '\0';
}

/* How an error message names what it found instead of what it wanted. */
static const char *describe(const struct parser *p, const struct token *t, char *buf, size_t size)
{
	char q[QUOTE_MAX + 8];

	if (size < sizeof q + 2)
		return "?";
	if (t->kind == T_EOF)
		return "the end of the selector";
	quote(p, t->start, t->end - t->start, q, sizeof q);
	snprintf(buf, size, "'%s'", q);
	return buf;
}

/* Whether text at off starts with word followed by a character that cannot continue a label. */
static bool word_at(const struct parser *p, size_t off, const char *word, size_t *end)
{
	size_t n = strlen(word);

	if (p->len - off < n || memcmp(p->text + off, word, n) != 0)
		return false;
	*end = off + n;
	return true;
}

static size_t skip_space(const struct parser *p, size_t off)
{
	while (off < p->len && is_space(p->text[off]))
		off++;
	return off;
}

static size_t ident_len(const struct parser *p, size_t off)
{
	size_t n = 0;

	while (off + n < p->len && is_ident((unsigned char)p->text[off + n]))
		n++;
	return n;
}

static int check_label_len(struct parser *p, size_t off, size_t n)
{
	if (n > LABEL_MAX)
		return fail(p, off, "label is %zu characters long, more than %d", n, LABEL_MAX);
	return 0;
}

/* The operator after a label: in, not in, notin, contains, starts with, startswith, ends with,
 * endswith. The operator must end where a label could not go on, else it is not an operator
 * ("inf", "ends withs"). */
static int lex_operator(struct parser *p, size_t at)
{
	struct token *t = &p->tok;
	size_t end = at;
	size_t q;
	char what[QUOTE_MAX + 8];
	const char *second = NULL;

	t->start = at;
	if (word_at(p, at, "contains", &end)) {
		t->kind = T_CONTAINS;
	} else if (word_at(p, at, "starts", &q)) {
		t->kind = T_STARTS;
		second = "with";
	} else if (word_at(p, at, "ends", &q)) {
		t->kind = T_ENDS;
		second = "with";
	} else if (word_at(p, at, "not", &q)) {
		t->kind = T_NOTIN;
		second = "in";
	} else if (word_at(p, at, "in", &end)) {
		t->kind = T_IN;
	} else {
		goto bad;
	}
	if (second != NULL && !word_at(p, skip_space(p, q), second, &end))
		goto bad;
	if (end < p->len && is_ident((unsigned char)p->text[end]))
		goto bad;
	t->end = end;
	p->pos = end;
	return 0;

bad:
	/* Name the words that are not an operator, through the end of the last one. */
	if (end == at)
		end = second != NULL ? q : at;
	end += ident_len(p, end);
	quote(p, at, end > at ? end - at : 1, what, sizeof what);
	return fail(p, at, "expected an operator after the label '%.*s', found '%s'",
	            p->tok.vlen > QUOTE_MAX ? QUOTE_MAX : (int)p->tok.vlen, p->text + p->tok.voff,
	            what);
}

/* has( label ), all( ), global( ): the name is already matched at at, open is after '('. */
static int lex_function(struct parser *p, size_t at, size_t open, enum tok kind, const char *name)
{
	struct token *t = &p->tok;
	size_t q = skip_space(p, open);

	t->kind = kind;
	t->start = at;
	t->voff = t->vlen = 0;
	if (kind == T_HAS) {
		size_t n = ident_len(p, q);

		if (n == 0)
			return fail(p, q, "expected a label name inside has()");
		if (check_label_len(p, q, n) < 0)
			return -1;
		t->voff = q;
		t->vlen = n;
		q = skip_space(p, q + n);
	}
	if (q >= p->len || p->text[q] != ')')
		return fail(p, q, "expected ')' to close %s(", name);
	t->end = q + 1;
	p->pos = q + 1;
	return 0;
}

static int lex_string(struct parser *p, size_t at)
{
	struct token *t = &p->tok;
	const char *close = memchr(p->text + at + 1, p->text[at], p->len - at - 1);

	if (close == NULL)
		return fail(p, at, "unterminated string");
	t->kind = T_STRING;
	t->start = at;
	t->voff = at + 1;
	t->vlen = (size_t)(close - (p->text + at + 1));
	t->end = (size_t)(close - p->text) + 1;
	p->pos = t->end;
	return 0;
}

/* Lex the next token into p->tok. */
static int lex(struct parser *p)
{
	struct token *t = &p->tok;
	size_t at = skip_space(p, p->pos);
	const char *s = p->text + at;
	size_t left = p->len - at;
	bool after_label = t->kind == T_LABEL;
	size_t end;

	p->prev = t->kind;
	if (left == 0) {
		t->kind = T_EOF;
		t->start = t->end = at;
		p->pos = at;
		return 0;
	}
	t->start = at;
	t->end = at + 1;
	switch (s[0]) {
	case '(':
		t->kind = T_LPAREN;
		break;
	case ')':
		t->kind = T_RPAREN;
		break;
	case '{':
		t->kind = T_LBRACE;
		break;
	case '}':
		t->kind = T_RBRACE;
		break;
	case ',':
		t->kind = T_COMMA;
		break;
	case '"':
	case '\'':
		return lex_string(p, at);
	case '=':
		if (left < 2 || s[1] != '=')
			return fail(p, at, "a single '=' is not an operator (did you mean '=='?)");
		t->kind = T_EQ;
		t->end = at + 2;
		break;
	case '!':
		if (left >= 2 && s[1] == '=') {
			t->kind = T_NE;
			t->end = at + 2;
		} else {
			t->kind = T_NOT;
		}
		break;
	case '&':
		if (left < 2 || s[1] != '&')
			return fail(p, at, "a single '&' is not an operator (did you mean '&&'?)");
		t->kind = T_AND;
		t->end = at + 2;
		break;
	case '|':
		if (left < 2 || s[1] != '|')
			return fail(p, at, "a single '|' is not an operator (did you mean '||'?)");
		t->kind = T_OR;
		t->end = at + 2;
		break;
	case '\n':
		return fail(p, at, "unexpected newline");
	default:
		if (after_label)
			return lex_operator(p, at);
		if (word_at(p, at, "has(", &end))
			return lex_function(p, at, end, T_HAS, "has");
		if (word_at(p, at, "all(", &end))
			return lex_function(p, at, end, T_ALL, "all");
		if (word_at(p, at, "global(", &end))
			return lex_function(p, at, end, T_GLOBAL, "global");
		if (is_ident((unsigned char)s[0])) {
			size_t n = ident_len(p, at);

			if (check_label_len(p, at, n) < 0)
				return -1;
			t->kind = T_LABEL;
			t->voff = at;
			t->vlen = n;
			t->end = at + n;
			break;
		}
		if ((unsigned char)s[0] < 0x20 || (unsigned char)s[0] >= 0x7f)
			return fail(p, at, "unexpected byte 0x%02x", (unsigned char)s[0]);
		return fail(p, at, "unexpected character '%c'", s[0]);
	}
	p->pos = t->end;
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Parser                                                                                      */

static uint32_t new_node(struct parser *p, enum op op)
{
	struct tnode *nd;

	if (p->n == p->cap) {
		uint32_t cap = p->cap == 0 ? 16 : p->cap * 2;
		struct tnode *v = realloc(p->nodes, cap * sizeof *v);

		if (v == NULL) {
			p->nomem = true;
			fail(p, p->tok.start, "out of memory");
			return NONE;
		}
		p->nodes = v;
		p->cap = cap;
	}
	nd = &p->nodes[p->n];
	memset(nd, 0, sizeof *nd);
	nd->op = (uint8_t)op;
	nd->child = NONE;
	nd->next = NONE;
	return p->n++;
}

static int add_span(struct parser *p, size_t off, size_t len)
{
	if (p->nspans == p->capspans) {
		uint32_t cap = p->capspans == 0 ? 16 : p->capspans * 2;
		struct span *v = realloc(p->spans, cap * sizeof *v);

		if (v == NULL) {
			p->nomem = true;
			return fail(p, p->tok.start, "out of memory");
		}
		p->spans = v;
		p->capspans = cap;
	}
	p->spans[p->nspans].off = (uint32_t)off;
	p->spans[p->nspans].len = (uint32_t)len;
	p->nspans++;
	return 0;
}

static uint32_t parse_or(struct parser *p);

static const char *op_text(enum tok k)
{
	switch (k) {
	case T_EQ:
		return "==";
	case T_NE:
		return "!=";
	case T_CONTAINS:
		return "contains";
	case T_STARTS:
		return "starts with";
	case T_ENDS:
		return "ends with";
	case T_IN:
		return "in";
	default:
		return "not in";
	}
}

/* label op "value" | label (not) in {set}; the label is the lookahead. */
static uint32_t parse_comparison(struct parser *p)
{
	struct token label = p->tok;
	enum tok kind;
	uint32_t nd;
	char found[QUOTE_MAX + 16];

	if (lex(p) < 0)
		return NONE;
	kind = p->tok.kind;
	switch (kind) {
	case T_EQ:
	case T_NE:
	case T_CONTAINS:
	case T_STARTS:
	case T_ENDS:
		if (lex(p) < 0)
			return NONE;
		if (p->tok.kind != T_STRING) {
			fail(p, p->tok.start, "expected a quoted string after '%s', found %s",
			     op_text(kind), describe(p, &p->tok, found, sizeof found));
			return NONE;
		}
		nd = new_node(p, kind == T_EQ         ? OP_EQ
		                 : kind == T_NE       ? OP_NE
		                 : kind == T_CONTAINS ? OP_CONTAINS
		                 : kind == T_STARTS   ? OP_STARTS
		                                      : OP_ENDS);
		if (nd == NONE)
			return NONE;
		p->nodes[nd].voff = (uint32_t)p->tok.voff;
		p->nodes[nd].vlen = (uint32_t)p->tok.vlen;
		break;
	case T_IN:
	case T_NOTIN:
		if (lex(p) < 0)
			return NONE;
		if (p->tok.kind != T_LBRACE) {
			fail(p, p->tok.start, "expected '{' after '%s', found %s", op_text(kind),
			     describe(p, &p->tok, found, sizeof found));
			return NONE;
		}
		nd = new_node(p, kind == T_IN ? OP_IN : OP_NOTIN);
		if (nd == NONE)
			return NONE;
		p->nodes[nd].set = p->nspans;
		/* Members separated by commas; one trailing comma is allowed, an empty set too. */
		for (;;) {
			if (lex(p) < 0)
				return NONE;
			if (p->tok.kind != T_STRING)
				break;
			if (add_span(p, p->tok.voff, p->tok.vlen) < 0)
				return NONE;
			if (lex(p) < 0)
				return NONE;
			if (p->tok.kind != T_COMMA)
				break;
		}
		if (p->tok.kind != T_RBRACE) {
			fail(p, p->tok.start, "expected %s in the set after '%s', found %s",
			     p->prev == T_STRING ? "',' or '}'" : "a quoted string or '}'",
			     op_text(kind), describe(p, &p->tok, found, sizeof found));
			return NONE;
		}
		p->nodes[nd].nset = p->nspans - p->nodes[nd].set;
		break;
	default:
		fail(p, p->tok.start,
		     "expected an operator (==, !=, in, not in, contains, starts with, ends with) "
		     "after the label '%.*s', found %s",
		     label.vlen > QUOTE_MAX ? QUOTE_MAX : (int)label.vlen, p->text + label.voff,
		     describe(p, &p->tok, found, sizeof found));
		return NONE;
	}
	p->nodes[nd].koff = (uint32_t)label.voff;
	p->nodes[nd].klen = (uint32_t)label.vlen;
	if (lex(p) < 0)
		return NONE;
	return nd;
}

/* { "!" } operand */
static uint32_t parse_unary(struct parser *p)
{
	bool negated = false;
	uint32_t nd = NONE;
	char found[QUOTE_MAX + 16];

	while (p->tok.kind == T_NOT) {
		negated = !negated;
		if (lex(p) < 0)
			return NONE;
	}
	switch (p->tok.kind) {
	case T_HAS:
	case T_ALL:
	case T_GLOBAL:
		nd = new_node(p, p->tok.kind == T_HAS   ? OP_HAS
		                 : p->tok.kind == T_ALL ? OP_ALL
		                                        : OP_GLOBAL);
		if (nd == NONE)
			return NONE;
		p->nodes[nd].koff = (uint32_t)p->tok.voff;
		p->nodes[nd].klen = (uint32_t)p->tok.vlen;
		if (lex(p) < 0)
			return NONE;
		break;
	case T_LABEL:
		nd = parse_comparison(p);
		if (nd == NONE)
			return NONE;
		break;
	case T_LPAREN: {
		size_t open = p->tok.start;

		if (++p->depth > DEPTH_MAX) {
			fail(p, open, "parentheses nested more than %d deep", DEPTH_MAX);
			return NONE;
		}
		if (lex(p) < 0)
			return NONE;
		nd = parse_or(p);
		if (nd == NONE)
			return NONE;
		if (p->tok.kind != T_RPAREN) {
			fail(p, p->tok.start,
			     "expected ')' to close the '(' at column %zu, found %s", open + 1,
			     describe(p, &p->tok, found, sizeof found));
			return NONE;
		}
		p->depth--;
		if (lex(p) < 0)
			return NONE;
		break;
	}
	default:
		fail(p, p->tok.start,
		     "expected a label, has(), all(), global(), '!' or '(', found %s",
		     describe(p, &p->tok, found, sizeof found));
		return NONE;
	}
	if (negated) {
		uint32_t not = new_node(p, OP_NOT);

		if (not == NONE)
			return NONE;
		p->nodes[not ].child = nd;
		nd = not ;
	}
	return nd;
}

/* operand { sep operand }: one operand is itself, several are an AND/OR node. */
static uint32_t parse_list(struct parser *p, enum tok sep, enum op op,
                           uint32_t (*operand)(struct parser *))
{
	uint32_t first = operand(p);
	uint32_t last = first;
	uint32_t count = 1;
	uint32_t nd;

	if (first == NONE)
		return NONE;
	while (p->tok.kind == sep) {
		uint32_t next;

		if (lex(p) < 0)
			return NONE;
		next = operand(p);
		if (next == NONE)
			return NONE;
		p->nodes[last].next = next;
		last = next;
		count++;
	}
	if (count == 1)
		return first;
	nd = new_node(p, op);
	if (nd == NONE)
		return NONE;
	p->nodes[nd].child = first;
	p->nodes[nd].nchild = count;
	return nd;
}

static uint32_t parse_and(struct parser *p)
{
	return parse_list(p, T_AND, OP_AND, parse_unary);
}

static uint32_t parse_or(struct parser *p)
{
	return parse_list(p, T_OR, OP_OR, parse_and);
}

/* ------------------------------------------------------------------------------------------ */
/* The finished selector                                                                       */

struct builder {
	const struct parser *p;
	struct snode *nodes;
	const char **sets;
	char *strings;
	uint32_t n, nsets;
	size_t nstrings;
};

static const char *copy_string(struct builder *b, uint32_t off, uint32_t len)
{
	char *s = b->strings + b->nstrings;

	memcpy(s, b->p->text + off, len);
	s[len] = '\0';
	b->nstrings += (size_t)len + 1;
	return s;
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Emit the subtree of parse node t in preorder; returns its size. */
static uint32_t flatten(struct builder *b, uint32_t t)
{
	const struct tnode *tn = &b->p->nodes[t];
	uint32_t at = b->n++;
	struct snode *sn = &b->nodes[at];

	sn->op = tn->op;
	switch (tn->op) {
	case OP_HAS:
		sn->key = copy_string(b, tn->koff, tn->klen);
		break;
	case OP_EQ:
	case OP_NE:
	case OP_CONTAINS:
	case OP_STARTS:
	case OP_ENDS:
		sn->key = copy_string(b, tn->koff, tn->klen);
		sn->val = copy_string(b, tn->voff, tn->vlen);
		sn->n = tn->vlen;
		break;
	case OP_IN:
	case OP_NOTIN: {
		const char **set = b->sets + b->nsets;
		uint32_t n = 0;

		sn->key = copy_string(b, tn->koff, tn->klen);
		for (uint32_t i = 0; i < tn->nset; i++) {
			const struct span *s = &b->p->spans[tn->set + i];
			set[i] = copy_string(b, s->off, s->len);
		}
		/* Sorted byte-wise and de-duplicated: the canonical order, and what the
		 * evaluator's binary search needs. */
		qsort(set, tn->nset, sizeof *set, str_cmp);
		for (uint32_t i = 0; i < tn->nset; i++)
			if (n == 0 || strcmp(set[n - 1], set[i]) != 0)
				set[n++] = set[i];
		sn->set = set;
		sn->n = n;
		b->nsets += tn->nset;
		break;
	}
	case OP_NOT:
		flatten(b, tn->child);
		break;
	case OP_AND:
	case OP_OR:
		sn->n = tn->nchild;
		for (uint32_t c = tn->child; c != NONE; c = b->p->nodes[c].next)
			flatten(b, c);
		break;
	default:
		break;
	}
	b->nodes[at].size = b->n - at;
	return b->nodes[at].size;
}

struct strbuf {
	char *s;
	size_t len, cap;
	bool nomem;
};

static void put(struct strbuf *b, const char *s, size_t n)
{
	if (b->nomem)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap == 0 ? 64 : b->cap;
		char *v;

		while (b->len + n + 1 > cap)
			cap *= 2;
		v = realloc(b->s, cap);
		if (v == NULL) {
			b->nomem = true;
			return;
		}
		b->s = v;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void puts_(struct strbuf *b, const char *s)
{
	put(b, s, strlen(s));
}

/* A value in double quotes, or in single quotes when it contains a double quote. */
static void put_quoted(struct strbuf *b, const char *v)
{
	const char *q = strchr(v, '"') != NULL ? "'" : "\"";

	puts_(b, q);
	puts_(b, v);
	puts_(b, q);
}

/* The canonical text of the subtree at n (section 4.4, as Calico's printer writes it). */
static void print_node(struct strbuf *b, const struct snode *n)
{
	static const char *const ops[] = {
	    [OP_EQ] = " == ",
	    [OP_NE] = " != ",
	    [OP_CONTAINS] = " contains ",
	    [OP_STARTS] = " starts with ",
	    [OP_ENDS] = " ends with ",
	    [OP_IN] = " in {",
	    [OP_NOTIN] = " not in {",
	};
	const struct snode *c;

	switch (n->op) {
	case OP_ALL:
		puts_(b, "all()");
		break;
	case OP_GLOBAL:
		puts_(b, "global()");
		break;
	case OP_HAS:
		puts_(b, "has(");
		puts_(b, n->key);
		puts_(b, ")");
		break;
	case OP_EQ:
	case OP_NE:
	case OP_CONTAINS:
	case OP_STARTS:
	case OP_ENDS:
		puts_(b, n->key);
		puts_(b, ops[n->op]);
		put_quoted(b, n->val);
		break;
	case OP_IN:
	case OP_NOTIN:
		puts_(b, n->key);
		puts_(b, ops[n->op]);
		for (uint32_t i = 0; i < n->n; i++) {
			if (i > 0)
				puts_(b, ", ");
			put_quoted(b, n->set[i]);
		}
		puts_(b, "}");
		break;
	case OP_NOT:
		puts_(b, "!");
		print_node(b, n + 1);
		break;
	case OP_AND:
	case OP_OR:
		puts_(b, "(");
		c = n + 1;
		for (uint32_t i = 0; i < n->n; i++) {
			if (i > 0)
				puts_(b, n->op == OP_AND ? " && " : " || ");
			print_node(b, c);
			c += c->size;
		}
		puts_(b, ")");
		break;
	default:
		break;
	}
}

/* "s:" + base64url without padding of SHA-224("s:" + canonical), as Calico's MakeUniqueID. */
static void make_uid(const char *canonical, char *uid)
{
	struct sha224_ctx sha;
	struct base64_encode_ctx b64;
	uint8_t digest[SHA224_DIGEST_SIZE];
	char text[BASE64_ENCODE_LENGTH(SHA224_DIGEST_SIZE) + BASE64_ENCODE_FINAL_LENGTH + 1];
	size_t n;

	sha224_init(&sha);
	sha224_update(&sha, 2, (const uint8_t *)"s:");
	sha224_update(&sha, strlen(canonical), (const uint8_t *)canonical);
	sha224_digest(&sha, sizeof digest, digest);
	base64url_encode_init(&b64);
	n = base64_encode_update(&b64, text, sizeof digest, digest);
	n += base64_encode_final(&b64, text + n);
	while (n > 0 && text[n - 1] == '=')
		n--;
	/* 28 bytes are 38 characters: "s:" and those fill POLICY_UID_LEN exactly. */
	memcpy(uid, "s:", 2);
	memcpy(uid + 2, text, n < POLICY_UID_LEN - 3 ? n : POLICY_UID_LEN - 3);
	uid[n < POLICY_UID_LEN - 3 ? n + 2 : POLICY_UID_LEN - 1] = '\0';
}

/* Whether n is one test ("key == v", has(key), ...): a literal of a conjunction. */
static bool is_test(const struct snode *n)
{
	return n->op == OP_HAS || n->op == OP_EQ || n->op == OP_NE || n->op == OP_CONTAINS ||
	       n->op == OP_STARTS || n->op == OP_ENDS || n->op == OP_IN || n->op == OP_NOTIN;
}

#define LITS_MAX 64 /* a longer conjunction keeps one set */

struct lit_list {
	const struct snode *v[LITS_MAX];
	bool neg[LITS_MAX];
	unsigned n;
};

/* Collect the operands of the conjunction at n into l; false when one is not a (negated) test
 * or there are more than l holds. */
static bool collect_literals(const struct snode *n, struct lit_list *l)
{
	bool neg = false;

	if (n->op == OP_AND) {
		const struct snode *c = n + 1;
		for (uint32_t i = 0; i < n->n; i++, c += c->size)
			if (!collect_literals(c, l))
				return false;
		return true;
	}
	if (n->op == OP_ALL)
		return true; /* true in a conjunction */
	if (n->op == OP_NOT) {
		neg = true;
		n++;
	}
	if (!is_test(n) || l->n == LITS_MAX)
		return false;
	/* "!=" and "not in" are the negations of "==" and "in", absent labels included: a != 'x'
	 * holds for an endpoint without a exactly when a == 'x' does not. */
	if (n->op == OP_NE || n->op == OP_NOTIN)
		neg = !neg;
	l->v[l->n] = n;
	l->neg[l->n] = neg;
	l->n++;
	return true;
}

/* Fill s->lits when s is a conjunction of tests (policy_selector_literals()). 0 or -ENOMEM. */
static int split_literals(struct policy_selector *s)
{
	struct lit_list l = {.n = 0};
	struct strbuf text = {0};
	size_t off[LITS_MAX + 1];
	unsigned n, all = 0;
	char *block;

	/* A test alone that is not negated is its own literal: nothing to split. */
	if (is_test(s->nodes) && s->nodes[0].op != OP_NE && s->nodes[0].op != OP_NOTIN)
		return 0;
	if (!collect_literals(s->nodes, &l) || l.n == 0)
		return 0;
	for (unsigned i = 0; i < l.n; i++)
		all += !l.neg[i];
	all = all == 0;
	n = all + l.n;
	/* The positive texts, NUL-separated: a test's canonical text is print_node() of the test
	 * with its operator made positive. */
	for (unsigned i = 0; i < n; i++) {
		off[i] = text.len;
		if (all && i == 0) {
			puts_(&text, "all()");
		} else {
			struct snode t = *l.v[i - all];
			if (t.op == OP_NE)
				t.op = OP_EQ;
			else if (t.op == OP_NOTIN)
				t.op = OP_IN;
			print_node(&text, &t);
		}
		put(&text, "", 1); /* keep the NUL */
	}
	block = text.nomem ? NULL : malloc(n * sizeof(*s->lits) + n * POLICY_UID_LEN + text.len);
	if (block == NULL) {
		free(text.s);
		return -ENOMEM;
	}
	s->lits = (struct policy_selector_literal *)block;
	char *uids = block + n * sizeof(*s->lits);
	char *texts = uids + n * POLICY_UID_LEN;
	memcpy(texts, text.s, text.len);
	for (unsigned i = 0; i < n; i++) {
		s->lits[i].canonical = texts + off[i];
		make_uid(texts + off[i], uids + i * POLICY_UID_LEN);
		s->lits[i].uid = uids + i * POLICY_UID_LEN;
		s->lits[i].negated = !(all && i == 0) && l.neg[i - all];
	}
	s->n_lits = n;
	free(text.s);
	return 0;
}

static size_t align8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

/* One allocation holding the selector, its nodes, its set arrays and its strings. */
static struct policy_selector *build(const struct parser *p, uint32_t root)
{
	struct policy_selector *s;
	struct builder b = {.p = p};
	struct strbuf canon = {0};
	size_t strings = 0;
	size_t off_nodes = align8(sizeof *s);
	size_t off_sets = off_nodes + align8((size_t)p->n * sizeof(struct snode));
	size_t off_strings = off_sets + align8((size_t)p->nspans * sizeof(char *));
	char *block;

	for (uint32_t i = 0; i < p->n; i++)
		strings += (size_t)p->nodes[i].klen + 1 + p->nodes[i].vlen + 1;
	for (uint32_t i = 0; i < p->nspans; i++)
		strings += (size_t)p->spans[i].len + 1;
	block = calloc(1, off_strings + strings);
	if (block == NULL)
		return NULL;
	s = (struct policy_selector *)block;
	b.nodes = (struct snode *)(block + off_nodes);
	b.sets = (const char **)(block + off_sets);
	b.strings = block + off_strings;
	flatten(&b, root);
	s->nodes = b.nodes;
	s->n = b.n;

	print_node(&canon, s->nodes);
	if (canon.nomem) {
		free(canon.s);
		free(block);
		return NULL;
	}
	s->canonical = canon.s;
	make_uid(s->canonical, s->uid);
	if (split_literals(s) != 0) {
		free(s->canonical);
		free(block);
		return NULL;
	}
	return s;
}

int policy_selector_parse(const char *text, struct policy_selector **out, size_t *err_offset,
                          char *err, size_t errlen)
{
	struct parser p = {.text = text, .err = err, .errlen = errlen};
	struct policy_selector *s = NULL;
	uint32_t root;
	char found[QUOTE_MAX + 16];
	int rv = -EINVAL;

	*out = NULL;
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	p.len = strnlen(text, (size_t)POLICY_SELECTOR_MAX + 1);
	if (p.len > POLICY_SELECTOR_MAX) {
		fail(&p, POLICY_SELECTOR_MAX, "selector longer than %d bytes", POLICY_SELECTOR_MAX);
		goto err;
	}
	p.tok.kind = T_EOF;
	if (lex(&p) < 0)
		goto err;
	if (p.tok.kind == T_EOF) {
		/* A blank selector is all(). */
		root = new_node(&p, OP_ALL);
	} else {
		root = parse_or(&p);
		if (root != NONE && p.tok.kind != T_EOF)
			fail(&p, p.tok.start,
			     p.tok.kind == T_RPAREN ? "unmatched ')', found %s"
			                            : "expected '&&', '||' or the end of the "
			                              "selector, found %s",
			     describe(&p, &p.tok, found, sizeof found));
	}
	if (root == NONE || p.failed)
		goto err;
	s = build(&p, root);
	if (s == NULL) {
		p.nomem = true;
		fail(&p, 0, "out of memory");
		goto err;
	}
	*out = s;
	rv = 0;
	goto done;

err:
	if (p.nomem)
		rv = -ENOMEM;
	if (err_offset != NULL)
		*err_offset = p.err_off;
done:
	free(p.nodes);
	free(p.spans);
	return rv;
}

void policy_selector_free(struct policy_selector *s)
{
	if (s == NULL)
		return;
	free(s->canonical);
	free(s->lits);
	free(s);
}

const char *policy_selector_canonical(const struct policy_selector *s)
{
	return s->canonical;
}

const char *policy_selector_uid(const struct policy_selector *s)
{
	return s->uid;
}

bool policy_selector_is_all(const struct policy_selector *s)
{
	return s->n == 1 && (s->nodes[0].op == OP_ALL || s->nodes[0].op == OP_GLOBAL);
}

unsigned policy_selector_literals(const struct policy_selector *s,
                                  const struct policy_selector_literal **out)
{
	*out = s->lits;
	return s->n_lits;
}

/* ------------------------------------------------------------------------------------------ */
/* Evaluation                                                                                  */

static bool in_set(const struct snode *n, const char *v)
{
	uint32_t lo = 0;
	uint32_t hi = n->n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int c = strcmp(v, n->set[mid]);

		if (c == 0)
			return true;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return false;
}

static bool ends_with(const char *v, const char *suffix, size_t n)
{
	size_t len = strlen(v);

	return len >= n && memcmp(v + len - n, suffix, n) == 0;
}

/* The subtree at n over the labels seen through get. Inline so that each caller gets a copy
 * specialised for its lookup. */
static inline bool eval(const struct snode *n, policy_label_fn get, void *ctx)
{
	const char *v;
	const struct snode *c;

	switch (n->op) {
	case OP_ALL:
	case OP_GLOBAL:
		return true;
	case OP_NOT:
		return !eval(n + 1, get, ctx);
	case OP_AND:
		c = n + 1;
		for (uint32_t i = 0; i < n->n; i++, c += c->size)
			if (!eval(c, get, ctx))
				return false;
		return true;
	case OP_OR:
		c = n + 1;
		for (uint32_t i = 0; i < n->n; i++, c += c->size)
			if (eval(c, get, ctx))
				return true;
		return false;
	default:
		break;
	}
	v = get(ctx, n->key);
	switch (n->op) {
	case OP_HAS:
		return v != NULL;
	case OP_EQ:
		return v != NULL && strcmp(v, n->val) == 0;
	case OP_NE:
		/* An absent label is not equal to anything. */
		return v == NULL || strcmp(v, n->val) != 0;
	case OP_CONTAINS:
		return v != NULL && strstr(v, n->val) != NULL;
	case OP_STARTS:
		return v != NULL && strncmp(v, n->val, n->n) == 0;
	case OP_ENDS:
		return v != NULL && ends_with(v, n->val, n->n);
	case OP_IN:
		return v != NULL && in_set(n, v);
	case OP_NOTIN:
		return v == NULL || !in_set(n, v);
	default:
		return false;
	}
}

bool policy_selector_match(const struct policy_selector *s, policy_label_fn get, void *ctx)
{
	return eval(s->nodes, get, ctx);
}

static const char *labels_get(void *ctx, const char *key)
{
	return policy_labels_get(ctx, key);
}

bool policy_selector_match_labels(const struct policy_selector *s, const struct policy_labels *l)
{
	return eval(s->nodes, labels_get, (void *)l);
}

unsigned policy_selector_requires(const struct policy_selector *s, const char **keys,
                                  const char **values, unsigned max)
{
	const struct snode *root = s->nodes;
	unsigned got = 0;
	uint32_t first = 0, end = 1;

	/* the operands of a top-level and, or the root alone */
	if (root->op == OP_AND) {
		first = 1;
		end = root->size;
	}
	for (uint32_t i = first; i < end && got < max; i += s->nodes[i].size) {
		const struct snode *t = &s->nodes[i];
		if (t->op != OP_EQ && t->op != OP_HAS)
			continue;
		keys[got] = t->key;
		values[got] = t->op == OP_EQ ? t->val : NULL;
		got++;
	}
	return got;
}

unsigned policy_selector_in_values(const struct policy_selector *s, const char **key,
                                   const char *const **values)
{
	if (s->nodes[0].op != OP_IN)
		return 0;
	*key = s->nodes[0].key;
	*values = s->nodes[0].set;
	return s->nodes[0].n;
}

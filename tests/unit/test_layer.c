/* SPDX-License-Identifier: BSD-2-Clause */
/* The whiteout name rules of layer.c. */
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "check.h"
#include "layer.h"

static enum sqv_name_kind classify(const char *name, const char **target,
				   size_t *tlen)
{
	return sqv_layer_classify(name, strlen(name), target, tlen);
}

int main(void)
{
	const char *target = NULL;
	size_t tlen = 0;
	char longname[300];

	CHECK_EQ(classify("numpy", &target, &tlen), SQV_NAME_PLAIN);
	CHECK_EQ(classify(".hidden", &target, &tlen), SQV_NAME_PLAIN);
	CHECK_EQ(classify(".wh", &target, &tlen), SQV_NAME_PLAIN);
	CHECK_EQ(classify(".wh.numpy", &target, &tlen), SQV_NAME_WHITEOUT);
	CHECK(tlen == 5 && memcmp(target, "numpy", 5) == 0);
	CHECK_EQ(classify(".wh..hidden", &target, &tlen), SQV_NAME_WHITEOUT);
	CHECK(tlen == 7 && memcmp(target, ".hidden", 7) == 0);
	CHECK_EQ(classify(".wh..wh..opq", &target, &tlen), SQV_NAME_OPAQUE);
	/* Whiteouts of what no directory can hold are refused. */
	CHECK_EQ(classify(".wh.", &target, &tlen), SQV_NAME_INVALID);
	CHECK_EQ(classify(".wh..", &target, &tlen), SQV_NAME_INVALID);
	CHECK_EQ(classify(".wh...", &target, &tlen), SQV_NAME_INVALID);
	/* A whiteout of a whiteout is a whiteout of a name starting .wh. */
	CHECK_EQ(classify(".wh..wh.x", &target, &tlen), SQV_NAME_WHITEOUT);
	CHECK(tlen == 5 && memcmp(target, ".wh.x", 5) == 0);
	/* Names no directory may hold. */
	CHECK_EQ(classify("", &target, &tlen), SQV_NAME_INVALID);
	CHECK_EQ(classify(".", &target, &tlen), SQV_NAME_INVALID);
	CHECK_EQ(classify("..", &target, &tlen), SQV_NAME_INVALID);
	CHECK_EQ(classify("a/b", &target, &tlen), SQV_NAME_INVALID);
	CHECK_EQ(sqv_layer_classify("a\0b", 3, &target, &tlen), SQV_NAME_INVALID);
	memset(longname, 'x', sizeof(longname));
	CHECK_EQ(sqv_layer_classify(longname, 255, &target, &tlen), SQV_NAME_PLAIN);
	CHECK_EQ(sqv_layer_classify(longname, 256, &target, &tlen),
		 SQV_NAME_INVALID);
	/* overlayfs's markers: only a character device 0:0 is a whiteout,
	 * only the value "y" makes a directory opaque. */
	CHECK(sqv_layer_is_whiteout_inode(S_IFCHR | 0644, 0));
	CHECK(!sqv_layer_is_whiteout_inode(S_IFCHR | 0644, makedev(1, 3)));
	CHECK(!sqv_layer_is_whiteout_inode(S_IFBLK | 0644, 0));
	CHECK(!sqv_layer_is_whiteout_inode(S_IFREG | 0644, 0));
	CHECK(sqv_layer_is_opaque_xattr("trusted.overlay.opaque", "y", 1));
	CHECK(sqv_layer_is_opaque_xattr("user.overlay.opaque", "y", 1));
	CHECK(!sqv_layer_is_opaque_xattr("user.overlay.opaque", "x", 1));
	CHECK(!sqv_layer_is_opaque_xattr("user.overlay.opaque", "yy", 2));
	CHECK(!sqv_layer_is_opaque_xattr("security.overlay.opaque", "y", 1));
	CHECK(!sqv_layer_is_opaque_xattr("user.overlay.redirect", "y", 1));
	CHECK(sqv_layer_is_opaque_xattr("user.overlay.opaque", NULL, 0));
	return check_done();
}

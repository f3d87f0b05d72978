/*
 * cmd.h: the subcommands of the flowscore binary. Each takes the arguments after its name
 * (argv[0] is the subcommand name) and returns the process exit status: 0 success,
 * 1 failure, 2 usage error.
 */
#ifndef FS_CMD_H
#define FS_CMD_H

int fs_cmd_train(int argc, char **argv);   /* cmd_train.c */
int fs_cmd_eval(int argc, char **argv);    /* cmd_eval.c */
int fs_cmd_score(int argc, char **argv);   /* cmd_score.c */
int fs_cmd_sample(int argc, char **argv);  /* cmd_sample.c */
int fs_cmd_inspect(int argc, char **argv); /* cmd_inspect.c */
int fs_cmd_import(int argc, char **argv);  /* cmd_import.c */
int fs_cmd_serve(int argc, char **argv);   /* cmd_serve.c */
int fs_cmd_spool(int argc, char **argv);   /* cmd_spool.c */

#endif /* FS_CMD_H */

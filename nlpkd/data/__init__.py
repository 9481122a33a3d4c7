"""Task data: the task table, readers (local files, the Hub, the packaged BBC News corpus), labels and
tokenization.

```python
from nlpkd.data import load_bbc_news, tokenize_dataset

data = tokenize_dataset(load_bbc_news(), tokenizer, "bbc_news", max_length=128)
# a teacher with another tokenizer reads its own columns (teacher_input_ids, ...):
data = tokenize_dataset(load_bbc_news(), student_tokenizer, "bbc_news", 128, teacher_tokenizer=tokenizer)
```
"""

from .labels import is_missing_value, label_names
from .pairs import build_bbc_pairs
from .readers import (
    DataUnavailableError,
    bbc_news_path,
    load_bbc_news,
    load_custom_data,
    load_task_data,
)
from .tasks import DEFAULT_TASK, GLUE_TASKS, TASKS, TaskSpec, custom_task, get_task
from .teacher_inputs import (
    TEACHER_PREFIX,
    DataCollatorWithTeacherPadding,
    student_view,
    teacher_view,
)
from .tokenize import tokenize_dataset

__all__ = [
    "DEFAULT_TASK",
    "GLUE_TASKS",
    "TASKS",
    "TEACHER_PREFIX",
    "DataCollatorWithTeacherPadding",
    "DataUnavailableError",
    "TaskSpec",
    "bbc_news_path",
    "build_bbc_pairs",
    "custom_task",
    "get_task",
    "is_missing_value",
    "label_names",
    "load_bbc_news",
    "load_custom_data",
    "load_task_data",
    "student_view",
    "teacher_view",
    "tokenize_dataset",
]
